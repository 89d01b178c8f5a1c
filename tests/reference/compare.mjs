// compare.mjs - does cxm's analytic answer equal the reference's?
//
//   node compare.mjs CXM.json REFERENCE.json [--ignore FIELD]... [--label TEXT]
//
// CXM.json is what `cxmctl --json journey funnel|paths|touchpoints` prints
// (proto field names, fields at their default left out, enums by their full
// names, 64-bit integers as numbers); REFERENCE.json is one answer line of
// journey_ref.mjs (the same shape, every field present, plus kind and
// duckdb_ms). Counts must be equal exactly, rates (and the value totals, sums
// of doubles) to 1e-9. A field left out on one side counts as its default
// (0, "", [], {}; an enum's *_UNSPECIFIED). --ignore FIELD skips every field
// of that name. Prints the first differences with their paths; exit 0 when
// equal, 1 when not, 2 on a usage error.
import { readFileSync } from 'node:fs';

// Fractions and sums of doubles: equal within 1e-9 (relative above 1).
const RATES = new Set(['conversion', 'overall_conversion', 'drop_off', 'share', 'exit_rate',
    'customer_share', 'goal_conversion', 'total_value', 'nps', 'csat',
    // feedback: GetScores' buckets and GapAnalysis' touchpoints
    'score', 'mean', 'margin_of_error', 'mean_expectation', 'mean_experience', 'gap',
    'volume_share', 'impact', 'priority', 'disappointed_share']);
const ALWAYS_IGNORED = new Set(['kind', 'duckdb_ms']);
const MAX_SHOWN = 12;

function usage(msg) {
    process.stderr.write(`compare.mjs: ${msg}\n` +
        'usage: node compare.mjs CXM.json REFERENCE.json [--ignore FIELD]... [--label TEXT]\n');
    process.exit(2);
}

function load(file) {
    let text;
    try {
        text = readFileSync(file, 'utf8').trim();
    } catch (e) {
        return usage(`cannot read ${file}: ${e.message}`);
    }
    try {
        return JSON.parse(text);
    } catch (e) {
        return usage(`${file} is not one JSON value (${e.message}): ${text.slice(0, 200)}`);
    }
}

const isDefault = (v) => v === undefined || v === null || v === 0 || v === '' || v === false ||
    (typeof v === 'string' && v.endsWith('_UNSPECIFIED')) ||
    (Array.isArray(v) && v.length === 0) ||
    (typeof v === 'object' && !Array.isArray(v) && Object.values(v).every(isDefault));

const show = (v) => (v === undefined ? '(absent)' : JSON.stringify(v));

function compare(a, b, path, key, ignored, out) {
    if (out.length >= MAX_SHOWN * 10) return;
    if (isDefault(a) && isDefault(b)) return;
    if (Array.isArray(a) || Array.isArray(b)) {
        const x = Array.isArray(a) ? a : [], y = Array.isArray(b) ? b : [];
        if (x.length !== y.length)
            out.push(`${path}: ${x.length} elements in cxm, ${y.length} in the reference`);
        for (let i = 0; i < Math.min(x.length, y.length); i++)
            compare(x[i], y[i], `${path}[${i}]`, key, ignored, out);
        return;
    }
    if ((a && typeof a === 'object') || (b && typeof b === 'object')) {
        const x = a && typeof a === 'object' ? a : {}, y = b && typeof b === 'object' ? b : {};
        for (const k of new Set([...Object.keys(x), ...Object.keys(y)])) {
            if (ALWAYS_IGNORED.has(k) || ignored.has(k)) continue;
            compare(x[k], y[k], path ? `${path}.${k}` : k, k, ignored, out);
        }
        return;
    }
    if (typeof a === 'number' || typeof b === 'number') {
        const x = a ?? 0, y = b ?? 0;
        if (typeof x !== 'number' || typeof y !== 'number') {
            out.push(`${path}: cxm ${show(a)}, reference ${show(b)} (not both numbers)`);
        } else if (RATES.has(key)) {
            if (!(Math.abs(x - y) <= 1e-9 * Math.max(1, Math.abs(x), Math.abs(y))))
                out.push(`${path}: cxm ${x}, reference ${y} (differ by ${x - y})`);
        } else if (x !== y) {
            out.push(`${path}: cxm ${x}, reference ${y}`);
        }
        return;
    }
    if ((a ?? '') !== (b ?? '')) out.push(`${path}: cxm ${show(a)}, reference ${show(b)}`);
}

function main() {
    const args = process.argv.slice(2), files = [], ignored = new Set();
    let label = '';
    for (let i = 0; i < args.length; i++) {
        if (args[i] === '--ignore') ignored.add(args[++i] ?? usage('--ignore needs a field name'));
        else if (args[i] === '--label') label = args[++i] ?? usage('--label needs a text');
        else files.push(args[i]);
    }
    if (files.length !== 2) usage('two files are needed: the cxm answer and the reference');
    const cxm = load(files[0]), ref = load(files[1]);
    const diffs = [];
    compare(cxm, ref, '', '', ignored, diffs);
    const name = label || `${files[0]} vs ${files[1]}`;
    if (!diffs.length) {
        console.log(`same: ${name}`);
        return 0;
    }
    console.log(`DIFFERENT: ${name}: ${diffs.length}${diffs.length >= MAX_SHOWN * 10 ? '+' : ''}` +
        ' differences, the first:');
    for (const d of diffs.slice(0, MAX_SHOWN)) console.log(`  ${d}`);
    return 1;
}

process.exit(main());
