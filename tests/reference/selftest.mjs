// selftest.mjs - the reference itself checked against answers worked out by
// hand on a tiny world, and compare.mjs checked to notice a difference.
//
//   node selftest.mjs CACHE WORKDIR
//
// The world (T = 2025-01-01T00:00Z, m = minute, d = day):
//   A: anonymous_id:a1 browses (session s1), signs up as email:a@x linking
//      a1, then on the app as device_id:d1 linking email:a@x (s2) buys.
//      One customer of three identities; key anonymous_id:a1.
//   B: anonymous_id:b1, a purchase exactly 7 days after a page view.
//   C: device_id:c1 and anonymous_id:c2, never linked: two customers.
//   D: anonymous_id:d1, events without session_id (sessions by the gap).
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const [cache, work] = process.argv.slice(2);
if (!cache || !work) {
    process.stderr.write('usage: node selftest.mjs CACHE WORKDIR\n');
    process.exit(2);
}
mkdirSync(work, { recursive: true });

const T = 1735689600000, m = 60000, d = 86400000, W = 7 * d;
const HEADER = 'event_id,customer_id,identity_type,identity_value,touchpoint,channel,event_type,' +
    'stage,occurred_at_unix_ms,session_id,value,currency,item_id,link_identities,properties';
// id, gen customer, identity, touchpoint, channel, type, at, session, value, link, properties
const EVENTS = [
    ['e01', 'c1', 'anonymous_id:a1', 'search_landing', 'web', 'page_view', T, 's1'],
    ['e02', 'c1', 'anonymous_id:a1', 'product_page', 'web', 'product_view', T + m, 's1'],
    ['e03', 'c1', 'email:a@x', 'account', 'web', 'sign_up', T + 2 * m, 's1', 0, 'anonymous_id:a1'],
    ['e04', 'c1', 'device_id:d1', 'product_page', 'app', 'product_view', T + d, 's2', 0,
        'email:a@x'],
    ['e05', 'c1', 'device_id:d1', 'cart', 'app', 'add_to_cart', T + d + m, 's2'],
    ['e06', 'c1', 'device_id:d1', 'checkout', 'app', 'purchase', T + d + 2 * m, 's2', 1000, '',
        { price: 1000 }],
    ['e07', 'c2', 'anonymous_id:b1', 'search_landing', 'web', 'page_view', T + 10 * m, 's3'],
    ['e08', 'c2', 'anonymous_id:b1', 'product_page', 'web', 'product_view', T + 11 * m, 's3'],
    ['e09', 'c2', 'anonymous_id:b1', 'cart', 'web', 'add_to_cart', T + 12 * m, 's3'],
    ['e10', 'c2', 'anonymous_id:b1', 'search_landing', 'web', 'page_view', T + 2 * d, 's4'],
    ['e11', 'c2', 'anonymous_id:b1', 'checkout', 'web', 'purchase', T + 9 * d, 's5', 500, '',
        { price: 500 }],
    ['e12', 'c3', 'device_id:c1', 'product_page', 'app', 'product_view', T + 3 * m, 's6'],
    ['e13', 'c3', 'device_id:c1', 'search_landing', 'app', 'page_view', T + 4 * m, 's6'],
    ['e14', 'c3', 'device_id:c1', 'product_page', 'app', 'product_view', T + 5 * m, 's6'],
    ['e17', 'c3', 'device_id:c1', 'product_page', 'app', 'product_view', T + 6 * m, 's6'],
    ['e15', 'c3', 'anonymous_id:c2', 'search_landing', 'web', 'page_view', T + 20 * m, 's7'],
    ['e16', 'c3', 'anonymous_id:c2', 'cart', 'web', 'add_to_cart', T + 21 * m, 's7'],
    ['e18', 'c4', 'anonymous_id:d1', 'product_page', 'web', 'product_view', T, ''],
    ['e19', 'c4', 'anonymous_id:d1', 'cart', 'web', 'add_to_cart', T + 10 * m, ''],
    ['e20', 'c4', 'anonymous_id:d1', 'product_page', 'web', 'product_view', T + 50 * m, ''],
];

function csvLine([id, cust, who, tp, ch, type, at, sess, value = 0, link = '', props = {}]) {
    const [itype, ivalue] = who.split(':');
    const json = JSON.stringify(props).replace(/"/g, '""');
    return [id, cust, itype, ivalue, tp, ch, type, 'x', at, sess, value || '', value ? 'KRW' : '',
        '', link, `"${json}"`].join(',');
}
// Customers out of order, as a real export might be.
const lines = [...EVENTS].reverse().map(csvLine);
writeFileSync(path.join(work, 'events.csv'), [HEADER, ...lines, ''].join('\n'));

// ---------- questions and the answers worked out by hand ----------

const ALL = { from_unix_ms: T, to_unix_ms: T + 30 * d };
const FOUR = [
    { name: 'land', event_type: 'page_view' }, { name: 'view', event_type: 'product_view' },
    { name: 'cart', event_type: 'add_to_cart' }, { name: 'buy', event_type: 'purchase' }];

// Steps from their customers and from-previous times (sorted).
function steps(names, customers, times) {
    return customers.map((c, i) => {
        const prev = i ? customers[i - 1] : c, t = times[i] ?? [];
        const rank = (p) => (t.length ? t[Math.ceil(p * t.length - 1e-9) - 1] : 0);
        return {
            name: names[i], customers: c, conversion: i ? (prev ? c / prev : 0) : 1,
            overall_conversion: customers[0] ? c / customers[0] : 0, dropped: i ? prev - c : 0,
            drop_off: i && prev ? (prev - c) / prev : 0,
            median_from_previous_ms: i ? rank(0.5) : 0, p90_from_previous_ms: i ? rank(0.9) : 0,
        };
    });
}
const N4 = FOUR.map((s) => s.name);

const CASES = [
    ['funnel ordered: A 4 steps, B 3 (its purchase is 9 days on), C1 2, C2 1',
        { kind: 'funnel', steps: FOUR, range: ALL, window_ms: W, order: 'FUNNEL_ORDER_ORDERED' },
        { steps: steps(N4, [4, 3, 2, 1], [[], [m, m, m], [m, d], [m]]), customers_considered: 5 }],
    ['funnel strict: A stops at sign_up, B at its second page view',
        { kind: 'funnel', steps: FOUR, range: ALL, window_ms: W, order: 'FUNNEL_ORDER_STRICT' },
        { steps: steps(N4, [4, 3, 1, 0], [[], [m, m, m], [m]]), customers_considered: 5 }],
    ['funnel any: C2 reaches 2 steps (page view and cart)',
        { kind: 'funnel', steps: FOUR, range: ALL, window_ms: W, order: 'FUNNEL_ORDER_ANY' },
        { steps: steps(N4, [4, 4, 2, 1], [[], [m, m, m, m], [m, d], [m]]),
            customers_considered: 5 }],
    ['funnel with a web channel filter: A loses its app events, C1 disappears',
        { kind: 'funnel', steps: FOUR, range: ALL, window_ms: W, channels: ['CHANNEL_WEB'] },
        { steps: steps(N4, [3, 2, 1, 0], [[], [m, m], [m]]), customers_considered: 4 }],
    ['funnel by channel of the first step',
        { kind: 'funnel', steps: FOUR, range: ALL, window_ms: W,
            breakdown: 'FUNNEL_BREAKDOWN_CHANNEL' },
        { steps: steps(N4, [4, 3, 2, 1], [[], [m, m, m], [m, d], [m]]), customers_considered: 5,
            groups: [{ value: 'web', steps: steps(N4, [3, 2, 2, 1], [[], [m, m], [m, d], [m]]) },
                { value: 'app', steps: steps(N4, [1, 1, 0, 0], [[], [m]]) }] }],
    ['funnel by first touchpoint (C1 first came to product_page)',
        { kind: 'funnel', steps: FOUR, range: ALL, window_ms: W,
            breakdown: 'FUNNEL_BREAKDOWN_FIRST_TOUCHPOINT', breakdown_limit: 1 },
        { steps: steps(N4, [4, 3, 2, 1], [[], [m, m, m], [m, d], [m]]), customers_considered: 5,
            groups: [{ value: 'search_landing',
                steps: steps(N4, [3, 2, 2, 1], [[], [m, m], [m, d], [m]]) }] }],
    ['funnel: B buys exactly at the end of the window of its second page view',
        { kind: 'funnel', range: ALL, window_ms: W, steps: [FOUR[0], FOUR[3]] },
        { steps: steps(['land', 'buy'], [4, 2], [[], [d + 2 * m, W]]), customers_considered: 5 }],
    ['funnel: a property condition keeps only the 1000 purchase',
        { kind: 'funnel', range: ALL, window_ms: W, steps: [FOUR[0], { name: 'big',
            event_type: 'purchase', conditions: [{ name: 'price', op: 'COMPARE_OP_GT',
                value: { number_value: 600 } }] }] },
        { steps: steps(['land', 'big'], [4, 1], [[], [d + 2 * m]]), customers_considered: 5 }],
    ['funnel: nothing in range',
        { kind: 'funnel', steps: FOUR, range: { from_unix_ms: 1, to_unix_ms: 2 } },
        { steps: steps(N4, [0, 0, 0, 0], []), customers_considered: 0 }],
    ['paths from product_page, repeats collapsed; D cut by the 30-minute gap',
        { kind: 'paths', anchor: 'product_page', direction: 'PATH_DIRECTION_FROM', range: ALL },
        { sessions_considered: 6, distinct_paths: 5, paths: [
            { elements: ['product_page', 'cart'], sessions: 2, customers: 2, share: 2 / 6 },
            { elements: ['product_page'], sessions: 1, customers: 1, share: 1 / 6 },
            { elements: ['product_page', 'account'], sessions: 1, customers: 1, share: 1 / 6 },
            { elements: ['product_page', 'cart', 'checkout'], sessions: 1, customers: 1,
                share: 1 / 6 },
            { elements: ['product_page', 'search_landing', 'product_page'], sessions: 1,
                customers: 1, share: 1 / 6 }] }],
    ['paths from product_page, repeats kept, at most 2, top 2',
        { kind: 'paths', anchor: 'product_page', direction: 'PATH_DIRECTION_FROM', range: ALL,
            keep_repeats: true, max_length: 2, limit: 2 },
        { sessions_considered: 6, distinct_paths: 4, paths: [
            { elements: ['product_page', 'cart'], sessions: 3, customers: 3, share: 3 / 6 },
            { elements: ['product_page'], sessions: 1, customers: 1, share: 1 / 6 }] }],
    ['paths to add_to_cart by event type',
        { kind: 'paths', anchor: 'add_to_cart', direction: 'PATH_DIRECTION_TO', range: ALL,
            element: 'PATH_ELEMENT_EVENT_TYPE' },
        { sessions_considered: 4, distinct_paths: 3, paths: [
            { elements: ['page_view', 'add_to_cart'], sessions: 1, customers: 1, share: 0.25 },
            { elements: ['page_view', 'product_view', 'add_to_cart'], sessions: 1, customers: 1,
                share: 0.25 },
            { elements: ['product_view', 'add_to_cart'], sessions: 2, customers: 2,
                share: 0.5 }].sort((a, b) => b.sessions - a.sessions) }],
    ['paths to checkout, at most 2',
        { kind: 'paths', anchor: 'checkout', direction: 'PATH_DIRECTION_TO', range: ALL,
            max_length: 2 },
        { sessions_considered: 2, distinct_paths: 2, paths: [
            { elements: ['cart', 'checkout'], sessions: 1, customers: 1, share: 0.5 },
            { elements: ['checkout'], sessions: 1, customers: 1, share: 0.5 }] }],
];

// Stage rules as `cxmctl --json journey rules` prints them.
const RULES = [
    { rule_id: 'aw', event_type: 'page_view', touchpoint: 'search_landing',
        stage: 'JOURNEY_STAGE_AWARENESS', priority: 1 },
    { rule_id: 'co', event_type: 'product_view', touchpoint: 'product_page',
        stage: 'JOURNEY_STAGE_CONSIDERATION', priority: 2 },
    { rule_id: 'pu', event_type: 'purchase', touchpoint: 'checkout',
        stage: 'JOURNEY_STAGE_PURCHASE', priority: 3 }];
const ch = (name, events, total) => ({ channel: `CHANNEL_${name}`, events, share: events / total });
const st = (name, events, total) => ({ stage: `JOURNEY_STAGE_${name}`, events, share: events / total });
CASES.push(
    ['touchpoints on the first day, goal purchase, stage mix (C1 does not regress)',
        { kind: 'touchpoints', range: { from_unix_ms: T, to_unix_ms: T + d },
            goal_event_type: 'purchase', stage_rules: RULES },
        { customers_active: 5, stats: [
            { touchpoint: 'product_page', events: 7, unique_customers: 4, customer_share: 0.8,
                channels: [ch('WEB', 4, 7), ch('APP', 3, 7)], exit_rate: 0.4,
                stages: [st('CONSIDERATION', 7, 7)], goal_customers: 1, goal_conversion: 0.25 },
            { touchpoint: 'search_landing', events: 4, unique_customers: 4, customer_share: 0.8,
                channels: [ch('WEB', 3, 4), ch('APP', 1, 4)], exit_rate: 0,
                stages: [st('AWARENESS', 3, 4), st('CONSIDERATION', 1, 4)], goal_customers: 1,
                goal_conversion: 0.25 },
            { touchpoint: 'cart', events: 3, unique_customers: 3, customer_share: 0.6,
                channels: [ch('WEB', 3, 3)], exit_rate: 1,
                stages: [st('AWARENESS', 1, 3), st('CONSIDERATION', 2, 3)], goal_customers: 0,
                goal_conversion: 0 },
            { touchpoint: 'account', events: 1, unique_customers: 1, customer_share: 0.2,
                channels: [ch('WEB', 1, 1)], exit_rate: 1, stages: [st('CONSIDERATION', 1, 1)],
                goal_customers: 1, goal_conversion: 1 }] }],
    ['touchpoints: day buckets over 3 days (the empty one too), values',
        { kind: 'touchpoints', range: { from_unix_ms: T, to_unix_ms: T + 3 * d },
            bucket: 'TIME_BUCKET_DAY', touchpoints: ['product_page', 'checkout'] },
        { customers_active: 5, stats: [
            { touchpoint: 'product_page', events: 8, unique_customers: 4, customer_share: 0.8,
                channels: [ch('WEB', 4, 8), ch('APP', 4, 8)], exit_rate: 2 / 6,
                buckets: [{ start_unix_ms: T, events: 7, unique_customers: 4 },
                    { start_unix_ms: T + d, events: 1, unique_customers: 1 },
                    { start_unix_ms: T + 2 * d, events: 0, unique_customers: 0 }] },
            { touchpoint: 'checkout', events: 1, unique_customers: 1, customer_share: 0.2,
                channels: [ch('APP', 1, 1)], exit_rate: 1, total_value: 1000,
                buckets: [{ start_unix_ms: T, events: 0, unique_customers: 0 },
                    { start_unix_ms: T + d, events: 1, unique_customers: 1 },
                    { start_unix_ms: T + 2 * d, events: 0, unique_customers: 0 }] }] }],
    ['touchpoints: week buckets start on Monday 2024-12-30',
        { kind: 'touchpoints', range: { from_unix_ms: T, to_unix_ms: T + 10 * d },
            bucket: 'TIME_BUCKET_WEEK', touchpoints: ['checkout'] },
        { customers_active: 5, stats: [
            { touchpoint: 'checkout', events: 2, unique_customers: 2, customer_share: 0.4,
                channels: [ch('WEB', 1, 2), ch('APP', 1, 2)], exit_rate: 1, total_value: 1500,
                buckets: [{ start_unix_ms: T - 2 * d, events: 1, unique_customers: 1 },
                    { start_unix_ms: T + 5 * d, events: 1, unique_customers: 1 }] }] }],
);

// ---------- running ----------

const node = process.execPath;
const ref = (args) => execFileSync(node, [path.join(here, 'journey_ref.mjs'), '--cache', cache,
    '--events', path.join(work, 'events.csv'), ...args], { encoding: 'utf8' });

function compare(got, want, label) {
    const a = path.join(work, 'want.json'), b = path.join(work, 'got.json');
    writeFileSync(a, JSON.stringify(want));
    writeFileSync(b, got);
    try {
        process.stdout.write(execFileSync(node, [path.join(here, 'compare.mjs'), a, b, '--label',
            label], { encoding: 'utf8' }));
        return true;
    } catch (e) {
        process.stdout.write(e.stdout ?? String(e));
        return false;
    }
}

let failed = 0;
const [ids] = ref(['--identities']).trim().split('\n').map(JSON.parse);
const wantIds = { components: 5, gen_customers: 4, components_mixing_customers: 0,
    gen_customers_split: 1, gen_customers_whole: 3, same_ms_ties_within_customer: 0, events: 20 };
for (const [k, v] of Object.entries(wantIds))
    if (ids[k] !== v) console.log(`DIFFERENT: identities.${k}: ${ids[k]}, expected ${v}`), failed++;
if (!failed) console.log('same: identity components (A one customer of 3 identities, C two)');

const answers = ref(CASES.map(([, q]) => JSON.stringify(q))).trim().split('\n');
CASES.forEach(([label, , want], i) => {
    if (!compare(answers[i], { pending_events: 0, ...want }, label)) failed++;
});

// compare.mjs must notice a count and a rate that differ, and a missing path.
const first = JSON.parse(answers[0]);
for (const [what, mutate] of [
    ['a count', (x) => { x.steps[2].customers++; }],
    ['a rate', (x) => { x.steps[1].conversion += 1e-6; }],
    ['a missing group', (x) => { x.groups = [{ value: 'web' }]; }]]) {
    const bad = structuredClone(first);
    mutate(bad);
    if (compare(JSON.stringify(first), bad, `compare.mjs must report ${what}`)) {
        console.log(`FAILED: compare.mjs did not notice ${what}`);
        failed++;
    }
}
console.log(failed ? `reference selftest: ${failed} FAILED` : 'reference selftest: all passed');
process.exit(failed ? 1 : 0);
