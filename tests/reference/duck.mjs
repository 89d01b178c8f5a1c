// duck.mjs - what the DuckDB references share: loading @duckdb/node-api from
// the cache setup.sh installed it into, and reading a query's rows as plain
// JavaScript values (BIGINTs as numbers).
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

// The module; throws when it cannot be loaded from cache.
export async function loadDuckDB(cache) {
    const req = createRequire(path.join(path.resolve(cache), 'package.json'));
    return import(pathToFileURL(req.resolve('@duckdb/node-api')).href);
}

// DuckDB values as plain JSON: BIGINT as numbers (every count and time is
// far below 2^53), lists as arrays, structs as objects.
export function plain(v) {
    if (typeof v === 'bigint') return Number(v);
    if (Array.isArray(v)) return v.map(plain);
    if (v && typeof v === 'object') {
        const o = {};
        for (const [k, x] of Object.entries(v)) o[k] = plain(x);
        return o;
    }
    return v;
}

export async function rows(con, text) {
    const reader = await con.runAndReadAll(text);
    return reader.getRowObjectsJS().map(plain);
}
