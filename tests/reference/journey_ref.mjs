// journey_ref.mjs - the independent reference for the journey analytics
// (Funnel, Paths, TouchpointStats; proto/cxm/v1/journey.proto, Analytics):
// cxm-gen's events.csv loaded into DuckDB in memory, each question answered
// by plainly written SQL, the answer printed as JSON shaped like the proto
// response (proto field names, enums by their full names).
//
//   node journey_ref.mjs --cache DIR --events events.csv [--identities] [--repeat N]
//                        QUESTION...
//
// DIR is where tests/reference/setup.sh installed @duckdb/node-api. Each
// QUESTION is a JSON object: {"kind": "funnel"|"paths"|"touchpoints", ...}
// with the fields of the proto request (FunnelRequest, PathsRequest,
// TouchpointStatsRequest); TouchpointStats also takes "stage_rules" (the
// rules array of a GetStageRulesResponse, as `cxmctl --json journey rules`
// prints it) for the stage mix, and "base_currency" (default KRW, cxm-gen's
// currency) for total_value. One JSON line per question, with duckdb_ms:
// the second of two runs of the question's query (warm, data loaded), or
// with --repeat N the median of N runs after the first.
// --identities first prints how the identity components compare with
// cxm-gen's customer_id column.
//
// The customer: cxm resolves every event through profiles, and an event's
// link_identities merge profiles. So here a customer is a connected
// component of the graph of identities ("type:value") joined by each
// event's identity and its link identities, keyed by its smallest identity.
// Ties within a customer at the same millisecond are ordered by event_id
// (cxm orders them by a hash of event_id: a world with such ties may differ
// there; --identities reports how many there are).
import path from 'node:path';
import { loadDuckDB, rows } from './duck.mjs';

const CHANNELS = [
    'UNSPECIFIED', 'WEB', 'APP', 'CONTACT_CENTRE', 'STORE', 'SOCIAL', 'EMAIL',
    'SMS', 'PUSH', 'CHAT', 'FIELD', 'PARTNER', 'OTHER',
];
const STAGES = ['UNSPECIFIED', 'AWARENESS', 'CONSIDERATION', 'PURCHASE', 'USE', 'RETENTION',
    'ADVOCACY'];
const DAY_MS = 86400000;

function die(msg) {
    process.stderr.write(`journey_ref: ${msg}\n`);
    process.exit(2);
}

// ---------- request fields ----------

// An enum field given as its full proto name, its short name or its number.
function enumValue(v, prefix, names, field) {
    if (v === undefined || v === null || v === '' || v === 0) return 0;
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < names.length) return v;
    const s = String(v).toUpperCase().replace(/-/g, '_');
    const i = names.indexOf(s.startsWith(prefix) ? s.slice(prefix.length) : s);
    if (i < 0) die(`${field}: unknown value ${JSON.stringify(v)}; use one of ${names.join(', ')}`);
    return i;
}
const channelNum = (v, field) => enumValue(v, 'CHANNEL_', CHANNELS, field);
const sql = (s) => `'${String(s).replace(/'/g, "''")}'`;
const int = (v, field) => {
    const n = Number(v ?? 0);
    if (!Number.isSafeInteger(n)) die(`${field}: ${JSON.stringify(v)} is not an integer`);
    return n;
};

// [from, to) of a TimeRange; 0 leaves a side open.
function rangeSql(q, col, field) {
    const r = q.range ?? {};
    const from = int(r.from_unix_ms, `${field}.from_unix_ms`);
    const to = int(r.to_unix_ms, `${field}.to_unix_ms`);
    if (from && to && from >= to) die(`${field}: from_unix_ms must be before to_unix_ms`);
    const parts = [];
    if (from) parts.push(`${col} >= ${from}`);
    if (to) parts.push(`${col} < ${to}`);
    return { from, to, cond: parts.length ? parts.join(' AND ') : 'true' };
}

// The channels filter, applied before anything else is computed.
function channelsSql(q) {
    const nums = (q.channels ?? []).map((c, i) => channelNum(c, `channels[${i}]`));
    return nums.length ? `channel_num IN (${nums.join(', ')})` : 'true';
}

// One property condition (common.proto PropertyCondition) over the event's
// properties JSON. The CSV writes timestamps as numbers, so a timestamp
// condition compares with number properties.
function conditionSql(c, field) {
    const name = c.name ?? '';
    if (!name) die(`${field}.name: required`);
    const j = `json_extract(properties, ${sql('$."' + name.replace(/"/g, '\\"') + '"')})`;
    const op = enumValue(c.op, 'COMPARE_OP_', ['UNSPECIFIED', 'EQ', 'NE', 'LT', 'LE', 'GT', 'GE',
        'EXISTS', 'NOT_EXISTS', 'PREFIX', 'CONTAINS'], `${field}.op`);
    if (op === 7) return `${j} IS NOT NULL`;
    if (op === 8) return `${j} IS NULL`;
    const v = c.value ?? {};
    let typed, lit;
    if ('string_value' in v) {
        typed = `json_type(${j}) = 'VARCHAR'`, lit = sql(v.string_value);
    } else if ('number_value' in v || 'timestamp_unix_ms' in v) {
        typed = `json_type(${j}) IN ('BIGINT', 'UBIGINT', 'DOUBLE')`;
        lit = `${Number(v.number_value ?? v.timestamp_unix_ms)}::DOUBLE`;
    } else if ('bool_value' in v) {
        typed = `json_type(${j}) = 'BOOLEAN'`, lit = v.bool_value ? 'true' : 'false';
    } else {
        die(`${field}.value: required for this op`);
    }
    const val = 'string_value' in v ? `(${j} ->> '$')`
        : 'bool_value' in v ? `(${j} ->> '$')::BOOLEAN` : `(${j} ->> '$')::DOUBLE`;
    const cmp = { 1: '=', 2: '<>', 3: '<', 4: '<=', 5: '>', 6: '>=' }[op];
    if (cmp) return `(${typed} AND ${val} ${cmp} ${lit})`;
    if (!('string_value' in v)) die(`${field}.op: PREFIX and CONTAINS need a string_value`);
    if (op === 9) return `(${typed} AND starts_with(${val}, ${lit}))`;
    if (op === 10) return `(${typed} AND contains(lower(${val}), lower(${lit})))`;
    return die(`${field}.op: required`);
}

// A funnel step: an event matching every set field.
function stepSql(s, i) {
    const f = `steps[${i}]`;
    const parts = [];
    if (s.event_type) parts.push(`event_type = ${sql(s.event_type)}`);
    if (s.touchpoint) parts.push(`touchpoint = ${sql(s.touchpoint)}`);
    const ch = channelNum(s.channel, `${f}.channel`);
    if (ch) parts.push(`channel_num = ${ch}`);
    (s.conditions ?? []).forEach((c, k) => parts.push(conditionSql(c, `${f}.conditions[${k}]`)));
    if (!parts.length) die(`${f}: a step needs event_type, touchpoint, channel or conditions`);
    return parts.join(' AND ');
}

// ---------- loading ----------

// The events, each with its customer (identity component), and the stable
// order of a customer's events (rn).
const LOAD_SQL = (csv) => `
CREATE TABLE raw AS
SELECT * FROM read_csv(${sql(csv)}, header = true, quote = '"', escape = '"', columns = {
    'event_id': 'VARCHAR', 'customer_id': 'VARCHAR', 'identity_type': 'VARCHAR',
    'identity_value': 'VARCHAR', 'touchpoint': 'VARCHAR', 'channel': 'VARCHAR',
    'event_type': 'VARCHAR', 'stage': 'VARCHAR', 'occurred_at_unix_ms': 'BIGINT',
    'session_id': 'VARCHAR', 'value': 'DOUBLE', 'currency': 'VARCHAR', 'item_id': 'VARCHAR',
    'link_identities': 'VARCHAR', 'properties': 'VARCHAR'});

-- Edges of the identity graph, both ways: an event's identity and each of
-- its link identities.
CREATE TABLE ident_edge AS
WITH link AS (
    SELECT identity_type || ':' || identity_value AS a,
           unnest(string_split(link_identities, ';')) AS b
    FROM raw WHERE coalesce(link_identities, '') <> '')
SELECT a, b FROM link UNION SELECT b, a FROM link;

-- Connected components: every identity reaches itself and, transitively,
-- its neighbours; the component's key is the smallest identity reached.
CREATE TABLE ident_comp AS
WITH RECURSIVE node AS (
    SELECT DISTINCT identity_type || ':' || identity_value AS id FROM raw
    UNION SELECT a FROM ident_edge),
reach(id, r) AS (
    SELECT id, id FROM node
    UNION
    SELECT reach.id, ident_edge.b FROM reach JOIN ident_edge ON ident_edge.a = reach.r)
SELECT id, min(r) AS cust FROM reach GROUP BY id;

CREATE TABLE channel_names AS
SELECT * FROM (VALUES ${CHANNELS.map((c, i) => `(${sql(c.toLowerCase())}, ${i})`).join(', ')})
    AS t(name, num);

CREATE TABLE ev AS
SELECT r.event_id, c.cust, r.customer_id AS gen_customer, r.touchpoint, r.channel,
       n.num AS channel_num, r.event_type, r.occurred_at_unix_ms AS t,
       coalesce(r.session_id, '') AS session_id, coalesce(r.value, 0) AS value,
       coalesce(r.currency, '') AS currency, r.properties,
       row_number() OVER (PARTITION BY c.cust ORDER BY r.occurred_at_unix_ms, r.event_id) AS rn
FROM raw r
JOIN ident_comp c ON c.id = r.identity_type || ':' || r.identity_value
JOIN channel_names n ON n.name = r.channel
ORDER BY c.cust, rn;
`;

// ---------- queries ----------

// The columns the analytics read (not the properties).
const COLS = 'cust, rn, t, touchpoint, channel, channel_num, event_type, session_id, value, currency';

// Filtered events with their session, the key (cust, session_id, gap):
// events with a session_id have gap 0; session-less ones are numbered from 1
// by gaps of more than 30 minutes between them.
function sessionsCte(filter, src = 'ev', extra = '') {
    return `
fe AS (SELECT ${COLS}${extra} FROM ${src} WHERE ${filter}),
gapped AS (
    SELECT *, CASE WHEN t - lag(t) OVER (PARTITION BY cust ORDER BY rn) <= 1800000
                   THEN 0 ELSE 1 END AS new_session
    FROM fe WHERE session_id = ''),
sfe AS (
    SELECT *, 0 AS gap FROM fe WHERE session_id <> ''
    UNION ALL
    SELECT * EXCLUDE (new_session), sum(new_session) OVER (PARTITION BY cust ORDER BY rn) AS gap
    FROM gapped)`;
}

function funnelSql(q) {
    const steps = q.steps ?? [];
    if (steps.length < 2 || steps.length > 20) die('steps: 2 to 20 steps');
    const W = int(q.window_ms, 'window_ms') || 14 * DAY_MS;
    const order = enumValue(q.order, 'FUNNEL_ORDER_', ['UNSPECIFIED', 'ORDERED', 'STRICT', 'ANY'],
        'order') || 1;
    const breakdown = enumValue(q.breakdown, 'FUNNEL_BREAKDOWN_',
        ['UNSPECIFIED', 'CHANNEL', 'FIRST_TOUCHPOINT'], 'breakdown');
    if (q.segment_id) die('segment_id: the reference has no segments');
    const range = rangeSql(q, 't', 'range');
    const n = steps.length;
    const ctes = [`
m AS (SELECT cust, rn, t, channel, touchpoint, ${steps.map((s, i) => `(${stepSql(s, i)}) AS m${i + 1}`).join(', ')}
      FROM ev WHERE ${channelsSql(q)}),
a1 AS (SELECT cust, rn AS rn1, channel AS ch1, t AS t1 FROM m WHERE m1 AND ${range.cond})`];
    for (let k = 2; k <= n; k++) {
        const prev = order === 3 ? 't1' : `t${k - 1}`;
        let next;
        if (order === 1) // ORDERED: the earliest match after the previous step
            next = `SELECT min(m.t) FROM m WHERE m.cust = a.cust AND m.m${k}
                    AND m.t > a.${prev} AND m.t <= a.t1 + ${W}`;
        else if (order === 2) // STRICT: the very next event, if it matches
            next = `SELECT CASE WHEN arg_min(m.m${k}, m.rn) AND min(m.t) <= a.t1 + ${W}
                                THEN min(m.t) END
                    FROM m WHERE m.cust = a.cust AND m.t > a.${prev}`;
        else // ANY: the first match of this step in the window
            next = `SELECT min(m.t) FROM m WHERE m.cust = a.cust AND m.m${k}
                    AND m.t >= a.t1 AND m.t <= a.t1 + ${W}`;
        ctes.push(`a${k} AS (SELECT a.*, (${next}) AS t${k} FROM a${k - 1} a)`);
    }
    // ANY: step 1 is also met by any step-1 match in the window, and the
    // times are those of the 1st, 2nd, ... distinct step reached.
    const ts = `list_filter([${Array.from({ length: n }, (_, i) => `t${i + 1}`).join(', ')}],
                            x -> x IS NOT NULL)`;
    ctes.push(`
att AS (SELECT cust, rn1, ch1, ${order === 3 ? `list_sort(${ts})` : ts} AS ts FROM a${n}),
best AS (SELECT * FROM att
         QUALIFY row_number() OVER (PARTITION BY cust ORDER BY len(ts) DESC, ts[1], rn1) = 1),
first_tp AS (SELECT cust, arg_min(touchpoint, rn) AS tp FROM m GROUP BY cust),
grp AS (SELECT best.*, ${breakdown === 1 ? 'ch1' : breakdown === 2 ? 'first_tp.tp' : "''"} AS g
        FROM best JOIN first_tp USING (cust)),
step(k) AS (SELECT unnest(range(1, ${n + 1}))),
per_step AS (
    SELECT g, k, count(*) AS customers,
           list_sort(list(ts[k] - ts[k - 1]) FILTER (k > 1)) AS times
    FROM grp JOIN step ON len(ts) >= k GROUP BY g, k)`);
    return `WITH ${ctes.join(',\n')}
SELECT g, k, customers, times,
       (SELECT count(DISTINCT cust) FROM m WHERE ${range.cond}) AS considered
FROM per_step ORDER BY g, k`;
}

// Nearest rank: v[ceil(q n) - 1], with ceil(q n) in integers (q = p / 10).
const nearest = (v, p) => (v.length ? v[Math.floor((p * v.length + 9) / 10) - 1] : 0);

function funnelSteps(steps, counts) {
    return steps.map((s, i) => {
        const c = counts[i]?.customers ?? 0, prev = i ? counts[i - 1]?.customers ?? 0 : c;
        const first = counts[0]?.customers ?? 0, times = counts[i]?.times ?? [];
        return {
            name: s.name ?? '',
            customers: c,
            conversion: i === 0 ? 1 : prev ? c / prev : 0,
            overall_conversion: first ? c / first : 0,
            dropped: i ? prev - c : 0,
            drop_off: i && prev ? (prev - c) / prev : 0,
            median_from_previous_ms: i ? nearest(times, 5) : 0,
            p90_from_previous_ms: i ? nearest(times, 9) : 0,
        };
    });
}

function funnelAnswer(q, rows) {
    const groups = new Map();
    for (const r of rows) {
        if (!groups.has(r.g)) groups.set(r.g, []);
        groups.get(r.g)[r.k - 1] = { customers: r.customers, times: r.times ?? [] };
    }
    const totals = [];
    for (const counts of groups.values())
        counts.forEach((c, i) => {
            const t = (totals[i] ??= { customers: 0, times: [] });
            t.customers += c.customers, t.times.push(...c.times);
        });
    totals.forEach((t) => t.times.sort((a, b) => a - b));
    const out = { steps: funnelSteps(q.steps, totals), groups: [] };
    if (enumValue(q.breakdown, 'FUNNEL_BREAKDOWN_', ['UNSPECIFIED', 'CHANNEL',
        'FIRST_TOUCHPOINT'], 'breakdown')) {
        const limit = int(q.breakdown_limit, 'breakdown_limit') || 20;
        out.groups = [...groups.entries()]
            .map(([value, counts]) => ({ value, steps: funnelSteps(q.steps, counts) }))
            .sort((a, b) => b.steps[0].customers - a.steps[0].customers ||
                Buffer.compare(Buffer.from(a.value), Buffer.from(b.value)))
            .slice(0, limit);
    }
    out.customers_considered = rows.length ? rows[0].considered : 0;
    out.pending_events = 0;
    return out;
}

function pathsSql(q) {
    const anchor = q.anchor ?? '';
    if (!anchor) die('anchor: required');
    const dir = enumValue(q.direction, 'PATH_DIRECTION_', ['UNSPECIFIED', 'FROM', 'TO'],
        'direction');
    if (!dir) die('direction: FROM or TO');
    const max = int(q.max_length, 'max_length') || 5;
    if (max < 2 || max > 10) die('max_length: 2 to 10');
    const limit = int(q.limit, 'limit') || 20;
    const el = enumValue(q.element, 'PATH_ELEMENT_', ['UNSPECIFIED', 'TOUCHPOINT', 'EVENT_TYPE'],
        'element') === 2 ? 'event_type' : 'touchpoint';
    if (q.segment_id) die('segment_id: the reference has no segments');
    const range = rangeSql(q, 't', 'range');
    const slice = dir === 1 ? `list_slice(els, pos, pos + ${max - 1})`
        : `list_slice(els, greatest(1, pos - ${max - 1}), pos)`;
    return `WITH ${sessionsCte(channelsSql(q))},
considered AS (SELECT DISTINCT cust, session_id, gap FROM sfe WHERE ${el} = ${sql(anchor)} AND ${range.cond}),
seq_el AS (
    SELECT cust, session_id, gap, rn, ${el} AS el,
           lag(${el}) OVER (PARTITION BY cust, session_id, gap ORDER BY rn) AS prev
    FROM sfe SEMI JOIN considered USING (cust, session_id, gap)),
seq AS (
    SELECT cust, list(el ORDER BY rn) AS els FROM seq_el
    WHERE ${q.keep_repeats ? 'true' : 'prev IS DISTINCT FROM el'} GROUP BY cust, session_id, gap),
path AS (
    SELECT cust, ${slice} AS elements
    FROM (SELECT *, list_position(els, ${sql(anchor)}) AS pos FROM seq)),
counted AS (
    SELECT elements, count(*) AS sessions, count(DISTINCT cust) AS customers
    FROM path GROUP BY elements)
SELECT elements, sessions, customers,
       (SELECT count(*) FROM considered) AS considered,
       (SELECT count(*) FROM counted) AS distinct_paths
FROM counted ORDER BY sessions DESC, elements LIMIT ${limit}`;
}

function pathsAnswer(q, rows) {
    const considered = rows.length ? rows[0].considered : 0;
    return {
        paths: rows.map((r) => ({
            elements: r.elements,
            sessions: r.sessions,
            customers: r.customers,
            share: considered ? r.sessions / considered : 0,
        })),
        sessions_considered: considered,
        distinct_paths: rows.length ? rows[0].distinct_paths : 0,
        pending_events: 0,
    };
}

// The customer's stage after each event, under rules that only move
// forward (the rule set cxm-gen writes): the highest stage of the events
// so far whose first matching rule (priority descending, ties by rule_id)
// names it.
function stageSql(rules) {
    if (!rules) return null;
    const sorted = [...rules].sort((a, b) => (b.priority ?? 0) - (a.priority ?? 0) ||
        Buffer.compare(Buffer.from(a.rule_id ?? ''), Buffer.from(b.rule_id ?? '')));
    const whens = sorted.map((r, i) => {
        const f = `stage_rules[${i}]`;
        if (r.allow_regression) die(`${f}.allow_regression: the reference supports forward rules only`);
        if ((r.conditions ?? []).length) die(`${f}.conditions: not supported by the reference`);
        const parts = [];
        if (r.event_type) parts.push(`event_type = ${sql(r.event_type)}`);
        if (r.touchpoint) parts.push(`touchpoint = ${sql(r.touchpoint)}`);
        const ch = channelNum(r.channel, `${f}.channel`);
        if (ch) parts.push(`channel_num = ${ch}`);
        const st = enumValue(r.stage, 'JOURNEY_STAGE_', STAGES, `${f}.stage`);
        return `WHEN ${parts.join(' AND ') || 'true'} THEN ${st}`;
    });
    return `max(CASE ${whens.join(' ')} ELSE 0 END)
            OVER (PARTITION BY cust ORDER BY rn ROWS UNBOUNDED PRECEDING)`;
}

function bucketSql(q, range) {
    const b = enumValue(q.bucket, 'TIME_BUCKET_', ['UNSPECIFIED', 'HOUR', 'DAY', 'WEEK', 'MONTH'],
        'bucket');
    if (!b) return null;
    if (!range.from || !range.to) die('range: both sides are required with a bucket');
    const unit = ['', 'hour', 'day', 'week', 'month'][b];
    const trunc = (x) => `epoch_ms(date_trunc('${unit}', make_timestamp(${x}::BIGINT * 1000)))`;
    return { unit, trunc };
}

function touchpointsSql(q) {
    const range = rangeSql(q, 't', 'range');
    const goalWin = int(q.goal_window_ms, 'goal_window_ms') || 7 * DAY_MS;
    const stage = stageSql(q.stage_rules);
    const bucket = bucketSql(q, range);
    const base = sql(q.base_currency ?? 'KRW');
    const only = (q.touchpoints ?? []).length
        ? `WHERE touchpoint IN (${q.touchpoints.map(sql).join(', ')})` : '';
    const goal = q.goal_event_type ? sql(q.goal_event_type) : null;
    const ctes = [`
staged AS (SELECT ${COLS}, ${stage ?? 0} AS stage_num FROM ev),
${sessionsCte(`${channelsSql(q)} AND ${range.cond}`, 'staged', ', stage_num').trim()},
inr AS (SELECT * FROM sfe),
active AS (SELECT count(DISTINCT cust) AS n FROM inr),
tp AS (
    SELECT touchpoint, count(*) AS events, count(DISTINCT cust) AS customers,
           sum(value) FILTER (currency = ${base} OR (currency = '' AND ${base} = '')) AS total_value
    FROM inr ${only} GROUP BY touchpoint ORDER BY events DESC, touchpoint LIMIT 1000),
last_ev AS (
    SELECT cust, session_id, gap, arg_max(touchpoint, rn) AS tp FROM inr GROUP BY ALL),
exits AS (
    SELECT s.touchpoint, count(*) AS sessions, count(*) FILTER (l.tp = s.touchpoint) AS exited
    FROM (SELECT DISTINCT touchpoint, cust, session_id, gap FROM inr) s
    JOIN last_ev l USING (cust, session_id, gap)
    GROUP BY s.touchpoint),
channels AS (
    SELECT touchpoint, list({'channel': channel_num, 'events': events}
                            ORDER BY events DESC, channel_num) AS mix
    FROM (SELECT touchpoint, channel_num, count(*) AS events FROM inr GROUP BY ALL)
    GROUP BY touchpoint),
stages AS (
    SELECT touchpoint, list({'stage': stage_num, 'events': events} ORDER BY stage_num) AS mix
    FROM (SELECT touchpoint, stage_num, count(*) AS events FROM inr GROUP BY ALL)
    GROUP BY touchpoint)`];
    // The goal: a goal event after the customer's first event at the
    // touchpoint in range, within the window of it.
    ctes.push(goal ? `
firsts AS (SELECT touchpoint, cust, min(t) AS t0 FROM inr GROUP BY ALL),
goals AS (
    SELECT f.touchpoint, count(*) AS n FROM firsts f
    WHERE EXISTS (SELECT 1 FROM ev g WHERE g.cust = f.cust AND g.event_type = ${goal}
                  AND ${channelsSql(q)} AND g.t > f.t0 AND g.t <= f.t0 + ${goalWin})
    GROUP BY f.touchpoint)` : `
goals AS (SELECT NULL::VARCHAR AS touchpoint, 0 AS n WHERE false)`);
    ctes.push(bucket ? `
bucket_start AS (
    SELECT epoch_ms(b) AS start FROM generate_series(
        date_trunc('${bucket.unit}', make_timestamp(${range.from}::BIGINT * 1000)),
        make_timestamp(${range.to - 1}::BIGINT * 1000), INTERVAL 1 ${bucket.unit}) AS g(b)),
bucket_counts AS (
    SELECT touchpoint, ${bucket.trunc('t')} AS start, count(*) AS events,
           count(DISTINCT cust) AS customers
    FROM inr GROUP BY ALL),
buckets AS (
    SELECT tp.touchpoint, list({'start_unix_ms': b.start, 'events': coalesce(c.events, 0),
                                'unique_customers': coalesce(c.customers, 0)}
                               ORDER BY b.start) AS list
    FROM tp CROSS JOIN bucket_start b
    LEFT JOIN bucket_counts c ON c.touchpoint = tp.touchpoint AND c.start = b.start
    GROUP BY tp.touchpoint)` : `
buckets AS (SELECT NULL::VARCHAR AS touchpoint, [] AS list WHERE false)`);
    return `WITH ${ctes.join(',\n')}
SELECT tp.*, active.n AS active, e.sessions, e.exited, ch.mix AS channel_mix,
       st.mix AS stage_mix, coalesce(g.n, 0) AS goal_customers, b.list AS buckets
FROM tp CROSS JOIN active
JOIN exits e USING (touchpoint) JOIN channels ch USING (touchpoint)
JOIN stages st USING (touchpoint)
LEFT JOIN goals g USING (touchpoint) LEFT JOIN buckets b USING (touchpoint)
ORDER BY tp.events DESC, tp.touchpoint`;
}

function touchpointsAnswer(q, rows, active) {
    const stats = rows.map((r) => {
        const s = {
            touchpoint: r.touchpoint,
            events: r.events,
            unique_customers: r.customers,
            channels: r.channel_mix.map((c) => ({
                channel: `CHANNEL_${CHANNELS[c.channel]}`, events: c.events,
                share: c.events / r.events,
            })),
            exit_rate: r.sessions ? r.exited / r.sessions : 0,
            total_value: r.total_value ?? 0,
            buckets: r.buckets ?? [],
            customer_share: r.active ? r.customers / r.active : 0,
        };
        if (q.stage_rules)
            s.stages = r.stage_mix.map((m) => ({
                stage: `JOURNEY_STAGE_${STAGES[m.stage]}`, events: m.events,
                share: m.events / r.events,
            }));
        if (q.goal_event_type) {
            s.goal_customers = r.goal_customers;
            s.goal_conversion = r.customers ? r.goal_customers / r.customers : 0;
        }
        return s;
    });
    return { stats, customers_active: active, pending_events: 0 };
}

// ---------- running ----------

// The query once to warm up, then `repeat` times (1 unless --repeat N); the
// median of the warm runs is reported (with one run: the second time).
let repeat = 1;
async function timed(con, text) {
    let r = await rows(con, text);
    const times = [];
    for (let i = 0; i < repeat; i++) {
        const t0 = process.hrtime.bigint();
        r = await rows(con, text);
        times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    times.sort((a, b) => a - b);
    return { rows: r, ms: times[(times.length - 1) >> 1] };
}

async function answer(con, q) {
    switch (q.kind) {
    case 'funnel': {
        const { rows: r, ms } = await timed(con, funnelSql(q));
        return { ...funnelAnswer(q, r), duckdb_ms: ms };
    }
    case 'paths': {
        const { rows: r, ms } = await timed(con, pathsSql(q));
        return { ...pathsAnswer(q, r), duckdb_ms: ms };
    }
    case 'touchpoints': {
        const text = touchpointsSql(q);
        const { rows: r, ms } = await timed(con, text);
        // customers_active even when no touchpoint is left
        const range = rangeSql(q, 't', 'range');
        const [a] = await rows(con, `SELECT count(DISTINCT cust) AS n FROM ev
                                      WHERE ${channelsSql(q)} AND ${range.cond}`);
        return { ...touchpointsAnswer(q, r, a.n), duckdb_ms: ms };
    }
    default:
        return die(`kind: ${JSON.stringify(q.kind)}; use funnel, paths or touchpoints`);
    }
}

// How the identity components line up with cxm-gen's customers: a component
// holding events of two gen customers would be a wrong merge (never
// expected); a gen customer split over several components is one who never
// linked their identities (expected for some who never signed up).
const IDENTITY_REPORT_SQL = `
WITH per_comp AS (SELECT cust, count(DISTINCT gen_customer) AS n FROM ev GROUP BY cust),
per_gen AS (SELECT gen_customer, count(DISTINCT cust) AS n FROM ev GROUP BY gen_customer),
ties AS (SELECT count(*) AS n FROM (SELECT cust, t FROM ev GROUP BY cust, t HAVING count(*) > 1))
SELECT (SELECT count(*) FROM per_comp) AS components,
       (SELECT count(*) FROM per_gen) AS gen_customers,
       (SELECT count(*) FROM per_comp WHERE n > 1) AS components_mixing_customers,
       (SELECT count(*) FROM per_gen WHERE n > 1) AS gen_customers_split,
       (SELECT count(*) FROM per_gen WHERE n = 1) AS gen_customers_whole,
       (SELECT n FROM ties) AS same_ms_ties_within_customer,
       (SELECT count(*) FROM ev) AS events`;

async function main() {
    const args = process.argv.slice(2);
    let cache = process.env.CXM_DUCKDB_CACHE, events, identities = false;
    const questions = [];
    for (let i = 0; i < args.length; i++) {
        if (args[i] === '--cache') cache = args[++i];
        else if (args[i] === '--events') events = args[++i];
        else if (args[i] === '--identities') identities = true;
        else if (args[i] === '--repeat') {
            repeat = Number(args[++i]);
            if (!Number.isInteger(repeat) || repeat < 1 || repeat > 1000) die('--repeat: 1 to 1000');
        }
        else {
            try {
                questions.push(JSON.parse(args[i]));
            } catch (e) {
                die(`question ${questions.length + 1}: not JSON (${e.message})`);
            }
        }
    }
    if (!cache) die('--cache DIR (where tests/reference/setup.sh installed DuckDB) is required');
    if (!events) die('--events events.csv is required');
    let duckdb;
    try {
        duckdb = await loadDuckDB(cache);
    } catch (e) {
        die(`cannot load @duckdb/node-api from ${cache}: ${e.message}; run tests/reference/setup.sh`);
    }
    const db = await duckdb.DuckDBInstance.create(':memory:');
    const con = await db.connect();
    const t0 = process.hrtime.bigint();
    await con.run(LOAD_SQL(path.resolve(events)));
    const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
    if (identities) {
        const [r] = await rows(con, IDENTITY_REPORT_SQL);
        console.log(JSON.stringify({ kind: 'identities', ...r, load_ms: loadMs }));
    }
    for (const q of questions) console.log(JSON.stringify({ kind: q.kind, ...await answer(con, q) }));
}

main().catch((e) => {
    process.stderr.write(`journey_ref: ${e.stack ?? e}\n`);
    process.exit(1);
});
