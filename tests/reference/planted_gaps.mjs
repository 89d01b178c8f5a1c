// planted_gaps.mjs - do the planted gap touchpoints of a cxm-gen world top a
// GapAnalysis answer in the planted order?
//
//   node planted_gaps.mjs TRUTH.json GAPS.json [--label TEXT]
//
// TRUTH.json is cxm-gen's truth.json; GAPS.json a GapAnalysisResponse as
// JSON (cxmctl --json feedback gaps, or cxm-bench-feedback's gaps.json). The
// planted order is what each gap costs in NPS over its raters, gap *
// nps_slope * ratings, largest first. Exit 0 when the first touchpoints of
// the answer are the planted ones in that order, 1 when not.
import { readFileSync } from 'node:fs';

const [truthFile, gapsFile] = process.argv.slice(2);
const i = process.argv.indexOf('--label');
const label = i > 0 ? `${process.argv[i + 1]}: ` : '';
const truth = JSON.parse(readFileSync(truthFile, 'utf8'));
const got = (JSON.parse(readFileSync(gapsFile, 'utf8')).gaps ?? []).map((g) => g.touchpoint);
const want = truth.planted.gap_touchpoints
    .map((t) => ({ tp: t.touchpoint, cost: t.gap * t.nps_slope * t.ratings }))
    .sort((a, b) => b.cost - a.cost)
    .map((t) => t.tp);
const top = got.slice(0, want.length);
if (JSON.stringify(top) !== JSON.stringify(want)) {
    console.log(`${label}DIFFERENT: planted order ${want.join(', ')}; GapAnalysis top ${top.join(', ')}`);
    process.exit(1);
}
console.log(`${label}same: planted gaps on top in the planted order: ${top.join(', ')}`);
