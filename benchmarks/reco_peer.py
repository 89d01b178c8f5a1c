#!/usr/bin/env python3
"""reco_peer.py - a Python grpcio + numpy/scipy server for
cxm.v1.PersonalisationService/Recommend, to compare cxm's Recommend against
on the same model in the same run (benchmarks/reco_peer.sh). A benchmark
tool only: nothing in cxm depends on it.

    python3 reco_peer.py --model MODEL.cxmx --histories HIST.csv \
        [--proto-dir proto] [--listen 127.0.0.1:0] [--threads 8] [--max-history 2000] [--cache]

--model is cxm's serving model as recodb_export writes it ("CXMX", see
services/personalisation/reco/recodb.h; cxm-bench-reco --export-from).
--histories is cxm-bench-nbe --histories-out: customer_id,item,weight,ts,
the interactions cxmd holds for the customers the requests name.

Recommend scores as recodb does without its candidate cache: the latest
--max-history interactions of the customer (weight, no recency decay: cxmd's
default), score = sum of weight x the item's neighbour row, consumed and
excluded items dropped, only positive scores, the top k (argpartition), and a
popularity fill below them (-1, -2, ...). No eligibility rules, caps, values
or weights: the peer does less work than cxm's Recommend. Customers are named
by customer_id only. --cache keeps each answer (per customer, k and
exclusions; the histories never change here), as cxmd's candidate cache
answers a customer whose history has not changed since it was scored: it
measures grpcio's own floor. Every other method answers UNIMPLEMENTED (grpcio's
default for a method not registered).

The Python stubs are generated at start from --proto-dir's cxm/v1/*.proto
into a temporary directory (grpc_tools.protoc). Prints
"listening on HOST:PORT" once serving, as cxmd does.

    python3 reco_peer.py --compare CXM_ADDR PEER_ADDR --requests FILE.pb

instead sends every request of FILE.pb (cxm-bench-nbe --requests-out,
length-delimited) to both servers and prints, as one JSON line, how many
experiences of each top k the two share and the largest relative
difference of model_score on those shared: the evidence that the peer
scores what cxm scores (cxm's rules drop some experiences, so the lists
need not be equal).
"""
import argparse
import concurrent.futures
import csv
import glob
import os
import signal
import struct
import sys
import tempfile

import grpc
import numpy as np
import scipy.sparse as sp
from grpc_tools import protoc

K_DEFAULT, K_MAX, EXCLUDE_MAX = 10, 100, 1000


def generate_stubs(proto_dir, out_dir):
    """personalisation_pb2 and its grpc module, generated into out_dir."""
    files = sorted(glob.glob(os.path.join(proto_dir, "cxm", "v1", "*.proto")))
    if not files:
        sys.exit(f"reco_peer: --proto-dir {proto_dir}: no cxm/v1/*.proto there")
    args = ["protoc", f"-I{proto_dir}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}"]
    if protoc.main(args + files) != 0:
        sys.exit(f"reco_peer: protoc failed on {proto_dir}/cxm/v1/*.proto")
    sys.path.insert(0, out_dir)
    from cxm.v1 import personalisation_pb2, personalisation_pb2_grpc

    return personalisation_pb2, personalisation_pb2_grpc


class Model:
    """The CXMX file: item ids, the neighbour rows as a CSR matrix, popularity."""

    def __init__(self, path):
        with open(path, "rb") as f:
            buf = f.read()
        if buf[:4] != b"CXMX":
            sys.exit(f"reco_peer: --model {path}: not a CXMX file (recodb_export)")
        try:
            self._parse(buf)
        except (struct.error, ValueError) as e:
            sys.exit(f"reco_peer: --model {path}: truncated or corrupt ({e})")

    def _parse(self, buf):
        self.version, n = struct.unpack_from("<II", buf, 4)
        off, ids = 12, []
        for _ in range(n):
            (length,) = struct.unpack_from("<H", buf, off)
            ids.append(buf[off + 2 : off + 2 + length].decode())
            off += 2 + length
        indptr, cols, vals = np.zeros(n + 1, np.int64), [], []
        pair = np.dtype([("item", "<u4"), ("w", "<f4")])
        for i in range(n):
            (count,) = struct.unpack_from("<I", buf, off)
            row = np.frombuffer(buf, pair, count, off + 4)
            cols.append(row["item"]), vals.append(row["w"])
            indptr[i + 1] = indptr[i] + count
            off += 4 + 8 * count
        (npop,) = struct.unpack_from("<I", buf, off)
        self.popular = np.frombuffer(buf, "<u4", npop, off + 4).astype(np.int64)
        cols = np.concatenate(cols) if cols else np.zeros(0, np.uint32)
        vals = np.concatenate(vals) if vals else np.zeros(0, np.float32)
        if len(cols) and cols.max() >= n:
            raise ValueError("a neighbour index is beyond the item table")
        self.rows = sp.csr_matrix((vals, cols.astype(np.int32), indptr), shape=(n, n))
        self.ids = np.array(ids, dtype=object)
        self.index = {item: i for i, item in enumerate(ids)}
        self.n = n


def load_histories(path, model, max_history):
    """customer_id -> (scored items, their weights, every consumed item), model
    indices; items the model does not know are skipped, as recodb skips them."""
    events = {}
    with open(path, newline="") as f:
        for line, row in enumerate(csv.reader(f), 1):
            if len(row) != 4:
                sys.exit(f"reco_peer: --histories {path}:{line}: want customer_id,item,weight,ts")
            events.setdefault(row[0], []).append((int(row[3]), row[1], float(row[2])))
    out = {}
    for customer, evs in events.items():
        evs.sort(key=lambda e: e[0])
        known = [(model.index[item], w) for _, item, w in evs if item in model.index]
        consumed = np.array(sorted({i for i, _ in known}), np.int64)
        latest = known[-max_history:]
        items = np.array([i for i, _ in latest], np.int32)
        weights = np.array([w for _, w in latest], np.float32)
        out[customer] = (items, weights, consumed)
    return out


class Recommender:
    def __init__(self, pb, model, histories, cache):
        self.pb, self.model, self.histories = pb, model, histories
        self.cache = {} if cache else None
        self.empty = (np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def scores(self, items, weights):
        """Sum over the history of weight x the item's neighbour row: the
        history's rows sliced out (CSR), then one transposed mat-vec, the
        fastest of scipy's ways measured on MovieLens' EASE model (a 1 x n
        sparse product took 1.3-1.8x as long, a dense one over the whole
        transposed model 1.2-13x)."""
        m = self.model
        if len(items) == 0:
            return np.zeros(m.n, np.float32)
        return m.rows[items].T.dot(weights)

    def top(self, s, k):
        """The k best positive scores, best first."""
        positive = np.flatnonzero(s > 0)
        if len(positive) > k:
            positive = positive[np.argpartition(-s[positive], k - 1)[:k]]
        return positive[np.argsort(-s[positive], kind="stable")]

    def fill(self, chosen, dropped, k):
        """Popularity below the model's scores: (index, -(rank + 1)) pairs."""
        skip = set(chosen.tolist()) | set(dropped.tolist())
        out = []
        for r, j in enumerate(self.model.popular.tolist()):
            if len(out) + len(chosen) >= k:
                break
            if j not in skip:
                out.append((j, -float(r) - 1))
        return out

    def Recommend(self, request, context):
        if self.cache is None:
            return self.answer(request, context)
        key = (request.customer.customer_id, request.k, tuple(request.exclude_experience_ids))
        resp = self.cache.get(key)
        if resp is None or not key[0]:
            resp = self.cache[key] = self.answer(request, context)
        return resp

    def answer(self, request, context):
        ref = request.customer
        if ref.WhichOneof("key") != "customer_id" or not ref.customer_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "customer: the peer knows customers by customer_id only; set it")
        k = request.k or K_DEFAULT
        if k > K_MAX:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"k: want 1 to {K_MAX}, got {k}")
        if len(request.exclude_experience_ids) > EXCLUDE_MAX:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"exclude_experience_ids: at most {EXCLUDE_MAX}")
        items, weights, consumed = self.histories.get(ref.customer_id, self.empty)
        idx = self.model.index
        excluded = np.array([idx[e] for e in request.exclude_experience_ids if e in idx], np.int64)
        dropped = np.concatenate([consumed, excluded])
        s = self.scores(items, weights)
        s[dropped] = 0
        chosen = self.top(s, k)
        ranked = [(int(j), float(s[j])) for j in chosen] + self.fill(chosen, dropped, k)
        resp = self.pb.RecommendResponse(customer_id=ref.customer_id,
                                         model_version=self.model.version,
                                         cold_start=len(items) == 0)
        for rank, (j, score) in enumerate(ranked, 1):
            resp.recommendations.add(experience_id=self.model.ids[j], score=score,
                                     model_score=score, rank=rank)
        return resp


def read_delimited(path):
    """The messages of a length-delimited stream (varint length + bytes)."""
    with open(path, "rb") as f:
        buf = f.read()
    off, out = 0, []
    while off < len(buf):
        length, shift = 0, 0
        while True:
            if off >= len(buf) or shift > 28:
                sys.exit(f"reco_peer: --requests {path}: damaged length at byte {off}")
            b = buf[off]
            off += 1
            length |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        if off + length > len(buf):
            sys.exit(f"reco_peer: --requests {path}: a record runs past the end")
        out.append(buf[off : off + length])
        off += length
    return out


def compare(pb, pb_grpc, cxm_addr, peer_addr, requests_path):
    """Each request to both servers; the agreement of their answers."""
    stubs = [pb_grpc.PersonalisationServiceStub(grpc.insecure_channel(a))
             for a in (cxm_addr, peer_addr)]
    shared = total = 0
    worst = 0.0
    for raw in read_delimited(requests_path):
        req = pb.RecommendRequest.FromString(raw)
        cxm, peer = (
            {r.experience_id: r.model_score for r in s.Recommend(req, timeout=30).recommendations}
            for s in stubs)
        total += len(peer)
        for e in cxm.keys() & peer.keys():
            shared += 1
            worst = max(worst, abs(cxm[e] - peer[e]) / max(abs(peer[e]), 1e-9))
    print(f'{{"requests":{len(read_delimited(requests_path))},"peer_items":{total},'
          f'"shared_with_cxm":{shared},"max_model_score_rel_diff":{worst:.3g}}}')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="CXMX file (cxm-bench-reco --export)")
    ap.add_argument("--histories", help="cxm-bench-nbe --histories-out CSV")
    ap.add_argument("--compare", nargs=2, metavar=("CXM_ADDR", "PEER_ADDR"),
                    help="compare the two servers' answers to --requests instead of serving")
    ap.add_argument("--requests", help="with --compare: cxm-bench-nbe --requests-out file")
    ap.add_argument("--proto-dir", default=os.path.join(os.path.dirname(__file__), "..", "proto"))
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--threads", type=int, default=8, help="grpcio's thread pool")
    ap.add_argument("--cache", action="store_true",
                    help="answer a request seen before from memory (see above)")
    ap.add_argument("--max-history", type=int, default=2000,
                    help="latest interactions scored (cxmd's --reco-max-history default)")
    a = ap.parse_args()
    if a.threads < 1 or a.max_history < 1:
        sys.exit("reco_peer: --threads and --max-history must be at least 1")
    if a.compare and not a.requests:
        sys.exit("reco_peer: --compare needs --requests")
    if not a.compare and not (a.model and a.histories):
        sys.exit("reco_peer: --model and --histories are required to serve")
    with tempfile.TemporaryDirectory(prefix="cxm-reco-peer-") as tmp:
        pb, pb_grpc = generate_stubs(a.proto_dir, tmp)
        if a.compare:
            return compare(pb, pb_grpc, *a.compare, a.requests)
        model = Model(a.model)
        histories = load_histories(a.histories, model, a.max_history)
        server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=a.threads))
        # The generated base class answers UNIMPLEMENTED for the rest.
        servicer = type("Peer", (Recommender, pb_grpc.PersonalisationServiceServicer), {})
        pb_grpc.add_PersonalisationServiceServicer_to_server(
            servicer(pb, model, histories, a.cache), server)
        port = server.add_insecure_port(a.listen)
        if port == 0:
            sys.exit(f"reco_peer: --listen {a.listen}: cannot bind")
        server.start()
        host = a.listen.rsplit(":", 1)[0]
        print(f"reco_peer: model version {model.version}, {model.n} items, "
              f"{model.rows.nnz} neighbours, {len(histories)} customers"
              + (", answers cached" if a.cache else ""), flush=True)
        print(f"listening on {host}:{port}", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
        server.wait_for_termination()


if __name__ == "__main__":
    main()
