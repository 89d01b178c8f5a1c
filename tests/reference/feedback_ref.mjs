// feedback_ref.mjs - the independent reference for the feedback analytics
// (GetScores and GapAnalysis; proto/cxm/v1/feedback.proto): cxm-gen's
// responses.csv and ratings.csv loaded into DuckDB in memory, each question
// answered by plainly written SQL, the answer written as JSON shaped like the
// proto response (proto field names, enums by their full names), the same
// questions cxm-bench-feedback asks:
//   scores_tp_week   NPS by touchpoint, week buckets (Monday) in --zone
//   scores_channel   CSAT by channel, totals only
//   scores_stage     CES by stage, month buckets in --zone
//   gaps             GapAnalysis, min_responses 30, limit 50
//
//   node feedback_ref.mjs --cache DIR --responses R.csv --ratings T.csv
//        [--zone Z] [--from MS] [--to MS] [--repeat N] [--out DIR]
//
// DIR is where tests/reference/setup.sh installed @duckdb/node-api. --out
// writes DIR/<question>.json; every question also prints one JSON line
// {"bench":"feedback.<question>","engine":"duckdb","duckdb_ms":...}: the best
// of N warm runs (--repeat N, default 1) of the question's SQL, data loaded.
// Time buckets come from DuckDB's own time zone support (ICU): the session
// TimeZone is set to --zone and date_trunc / generate_series work in it.
// With buckets and an open end of the range, the series runs from the
// bucket of the first response to that of the last (any kind), as cxm does.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadDuckDB, rows } from './duck.mjs';

function die(msg) {
    process.stderr.write(`feedback_ref: ${msg}\n`);
    process.exit(2);
}

const sql = (s) => `'${String(s).replace(/'/g, "''")}'`;

const LOAD_SQL = (responses, ratings) => `
CREATE TABLE resp AS
SELECT * FROM read_csv(${sql(responses)}, header = true, quote = '"', escape = '"', columns = {
    'response_id': 'VARCHAR', 'survey_id': 'VARCHAR', 'kind': 'VARCHAR', 'customer_id': 'VARCHAR',
    'identity_type': 'VARCHAR', 'identity_value': 'VARCHAR', 'score': 'INTEGER',
    'language': 'VARCHAR', 'text': 'VARCHAR', 'reason': 'VARCHAR', 'channel': 'VARCHAR',
    'stage': 'VARCHAR', 'touchpoint': 'VARCHAR', 'submitted_at_unix_ms': 'BIGINT',
    'trigger_event_id': 'VARCHAR', 'follow_up_expected': 'INTEGER'});
CREATE TABLE rat AS
SELECT * FROM read_csv(${sql(ratings)}, header = true, quote = '"', escape = '"', columns = {
    'response_id': 'VARCHAR', 'customer_id': 'VARCHAR', 'survey_id': 'VARCHAR',
    'score': 'INTEGER', 'touchpoint': 'VARCHAR', 'expectation': 'DOUBLE',
    'experience': 'DOUBLE'});`;

// ---------- GetScores ----------

// Positive / neutral / negative per kind: NPS 9-10 / 7-8 / 0-6, CSAT 4-5 /
// 3 / 1-2, CES 5-7 / 4 / 1-3.
const SPLIT = { nps: [9, 7], csat: [4, 3], ces: [5, 4] };
const KEYS = {
    none: "'all'",
    survey: 'survey_id',
    touchpoint: "coalesce(touchpoint, '')",
    channel: "'CHANNEL_' || upper(channel)",
    stage: "'JOURNEY_STAGE_' || upper(stage)",
};

function rangeCond(o, col) {
    const parts = [];
    if (o.from) parts.push(`${col} >= ${o.from}`);
    if (o.to) parts.push(`${col} < ${o.to}`);
    return parts.length ? parts.join(' AND ') : 'true';
}

// Counts and the score, mean and margin of error of each group, per bucket
// start (GROUPING SETS: per bucket and the total, start NULL).
function scoresSql(q, o) {
    const [pos, mid] = SPLIT[q.kind];
    const start = q.unit
        ? `epoch_ms(date_trunc('${q.unit}', make_timestamptz(submitted_at_unix_ms * 1000)))`
        : '0';
    const score = q.kind === 'nps' ? '100.0 * (p - d) / n' : q.kind === 'csat' ? '100.0 * p / n' : 'mean';
    const moe = q.kind === 'nps'
        ? '100 * 1.96 * sqrt(greatest(0, p / n + d / n - (p / n - d / n) ^ 2) / n)'
        : q.kind === 'csat' ? '100 * 1.96 * sqrt((p / n) * (1 - p / n) / n)'
        : 'CASE WHEN n >= 2 THEN 1.96 * sd / sqrt(n) ELSE 0 END';
    return `
WITH f AS (
    SELECT ${KEYS[q.by]} AS key, ${start} AS start, score FROM resp
    WHERE kind = ${sql(q.kind)} AND ${rangeCond(o, 'submitted_at_unix_ms')}),
g AS (
    SELECT key, start, count(*)::DOUBLE AS n, count(*) FILTER (WHERE score >= ${pos})::DOUBLE AS p,
           count(*) FILTER (WHERE score >= ${mid} AND score < ${pos}) AS mid,
           count(*) FILTER (WHERE score < ${mid})::DOUBLE AS d,
           avg(score) AS mean, stddev_samp(score) AS sd
    FROM f GROUP BY GROUPING SETS ((key, start), (key)))
SELECT key, start, n::BIGINT AS responses, ${score} AS score, p::BIGINT AS promoters,
       mid AS passives, d::BIGINT AS detractors, mean, ${moe} AS margin_of_error
FROM g`;
}

// The bucket starts of the series: from the bucket of the range's start (or
// of the first response) to the bucket of its last millisecond (or of the
// last response).
function seriesSql(q, o) {
    const lo = o.from ? `${o.from}` : `(SELECT min(submitted_at_unix_ms) FROM resp WHERE ${rangeCond(o, 'submitted_at_unix_ms')})`;
    const hi = o.to ? `${o.to - 1}` : `(SELECT max(submitted_at_unix_ms) FROM resp WHERE ${rangeCond(o, 'submitted_at_unix_ms')})`;
    return `
SELECT epoch_ms(unnest(generate_series(date_trunc('${q.unit}', make_timestamptz(${lo} * 1000)),
                                       make_timestamptz(${hi} * 1000), INTERVAL 1 ${q.unit})))
       AS start ORDER BY start`;
}

const ZERO = { responses: 0, score: 0, promoters: 0, passives: 0, detractors: 0, mean: 0,
    margin_of_error: 0 };

function scoresAnswer(q, rows, series) {
    const groups = new Map();
    for (const r of rows) {
        if (!groups.has(r.key)) groups.set(r.key, { key: r.key, by: new Map(), total: null });
        const g = groups.get(r.key), b = { ...r };
        delete b.key;
        delete b.start;
        if (r.start === null) g.total = { start_unix_ms: 0, ...b };
        else g.by.set(r.start, b);
    }
    if (q.by === 'none' && !groups.size) groups.set('all', { key: 'all', by: new Map(), total: null });
    const out = [...groups.values()].map((g) => ({
        key: q.by === 'none' ? 'all' : g.key,
        channel: q.by === 'channel' ? g.key : 'CHANNEL_UNSPECIFIED',
        stage: q.by === 'stage' ? g.key : 'JOURNEY_STAGE_UNSPECIFIED',
        buckets: q.unit ? series.map((s) => ({ start_unix_ms: s, ...(g.by.get(s) ?? ZERO) })) : [],
        total: g.total ?? { start_unix_ms: 0, ...ZERO },
    }));
    out.sort((a, b) => b.total.responses - a.total.responses ||
        (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return { groups: out };
}

// ---------- GapAnalysis ----------

// Every rating of a response in range; impact from the ratings of NPS
// responses: Pearson's r clamped to [0, 1], 1 below 30 of them, 0 when
// either side does not vary.
const GAPS_SQL = (o, min, limit) => `
WITH j AS (
    SELECT rat.touchpoint AS tp, rat.expectation AS e, rat.experience AS x, resp.score AS y,
           resp.kind = 'nps' AS nps
    FROM rat JOIN resp ON rat.response_id = resp.response_id
    WHERE ${rangeCond(o, 'resp.submitted_at_unix_ms')}),
per AS (
    SELECT tp, count(*) AS n, avg(e) AS me, avg(x) AS mx, count(*) FILTER (WHERE x < e) AS dis,
           count(*) FILTER (WHERE nps) AS m, corr(x, y) FILTER (WHERE nps) AS r,
           var_pop(x) FILTER (WHERE nps) AS vx, var_pop(y) FILTER (WHERE nps) AS vy
    FROM j GROUP BY tp HAVING count(*) >= ${min}),
kept AS (
    SELECT *, n / sum(n) OVER () AS vs, me - mx AS gap,
           CASE WHEN m < 30 THEN 1.0 WHEN vx = 0 OR vy = 0 THEN 0.0
                ELSE greatest(0.0, least(1.0, r)) END AS impact
    FROM per)
SELECT tp AS touchpoint, me AS mean_expectation, mx AS mean_experience, gap, n AS responses,
       vs AS volume_share, impact, greatest(gap, 0) * vs * impact AS priority,
       dis / n AS disappointed_share
FROM kept ORDER BY priority DESC, gap DESC, touchpoint LIMIT ${limit}`;

// ---------- running ----------

// Once to warm up, then `repeat` times; the best time is reported.
async function timed(con, texts, repeat) {
    let r = [];
    for (const t of texts) r.push(await rows(con, t));
    let best = Infinity;
    for (let i = 0; i < repeat; i++) {
        const t0 = process.hrtime.bigint();
        r = [];
        for (const t of texts) r.push(await rows(con, t));
        best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6);
    }
    return { r, ms: best };
}

const QUESTIONS = [
    { name: 'scores_tp_week', kind: 'nps', by: 'touchpoint', unit: 'week' },
    { name: 'scores_channel', kind: 'csat', by: 'channel', unit: '' },
    { name: 'scores_stage', kind: 'ces', by: 'stage', unit: 'month' },
    { name: 'gaps' },
];

async function main() {
    const args = process.argv.slice(2);
    const o = { zone: 'UTC', from: 0, to: 0, repeat: 1 };
    for (let i = 0; i < args.length; i += 2) {
        const k = args[i], v = args[i + 1];
        if (v === undefined) die(`${k} needs a value`);
        if (k === '--cache') o.cache = v;
        else if (k === '--responses') o.responses = v;
        else if (k === '--ratings') o.ratings = v;
        else if (k === '--zone') o.zone = v || 'UTC';
        else if (k === '--out') o.out = v;
        else if (k === '--from' || k === '--to' || k === '--repeat') {
            const n = Number(v);
            if (!Number.isSafeInteger(n) || n < 0) die(`${k}: ${v} is not a count`);
            o[k.slice(2)] = n;
        } else die(`unknown argument ${k}`);
    }
    if (!o.cache || !o.responses || !o.ratings) die('--cache, --responses and --ratings are required');
    let duckdb;
    try {
        duckdb = await loadDuckDB(o.cache);
    } catch (e) {
        die(`cannot load @duckdb/node-api from ${o.cache}: ${e.message}; run tests/reference/setup.sh`);
    }
    const db = await duckdb.DuckDBInstance.create(':memory:');
    const con = await db.connect();
    const t0 = process.hrtime.bigint();
    await con.run(LOAD_SQL(path.resolve(o.responses), path.resolve(o.ratings)));
    const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const [{ n }] = await rows(con, 'SELECT count(*) AS n FROM resp');
    console.log(JSON.stringify({ bench: 'feedback.load', engine: 'duckdb', responses: n,
        load_ms: loadMs }));
    for (const q of QUESTIONS) {
        await con.run(`SET TimeZone = ${sql(q.unit ? o.zone : 'UTC')}`);
        let answer, ms;
        if (q.name === 'gaps') {
            const t = await timed(con, [GAPS_SQL(o, 30, 50)], o.repeat);
            answer = { gaps: t.r[0] }, ms = t.ms;
        } else {
            const texts = [scoresSql(q, o)];
            if (q.unit) texts.push(seriesSql(q, o));
            const t = await timed(con, texts, o.repeat);
            answer = scoresAnswer(q, t.r[0], q.unit ? t.r[1].map((r) => r.start) : []);
            ms = t.ms;
        }
        if (o.out) writeFileSync(path.join(o.out, `${q.name}.json`), JSON.stringify(answer) + '\n');
        console.log(JSON.stringify({ bench: `feedback.${q.name}`, engine: 'duckdb', duckdb_ms: ms,
            repeat: o.repeat, responses: n }));
    }
}

main().catch((e) => {
    process.stderr.write(`feedback_ref: ${e.stack ?? e}\n`);
    process.exit(1);
});
