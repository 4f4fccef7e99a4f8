"""The anchor of `cargo xtask loadtest`: sentence-transformers' own encode(), in-process, batch 32,
2 threads, on the sentences the load test sends (argv[2], a JSON list), for at least argv[3]
seconds after a warm-up. encode() is called on 256 sentences at a time (8 batches of 32, sorted
by length within the call as encode() does), so that the run stops soon after its time.
Prints one JSON line: sentences/s and what it ran."""

import json
import sys
import time

import torch
from sentence_transformers import SentenceTransformer

folder, sentences_file, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
torch.set_num_threads(2)
with open(sentences_file) as f:
    sentences = json.load(f)
model = SentenceTransformer(folder, device="cpu")
model.encode(sentences[:64], batch_size=32)  # warm-up

CHUNK = 256
done = 0
start = time.perf_counter()
while True:
    chunk = sentences[done % len(sentences) :][:CHUNK]
    model.encode(chunk, batch_size=32)
    done += len(chunk)
    elapsed = time.perf_counter() - start
    if elapsed >= seconds:
        break
print(
    json.dumps(
        {
            "sentences_per_second": done / elapsed,
            "sentences": done,
            "seconds": elapsed,
            "threads": torch.get_num_threads(),
            "batch_size": 32,
        }
    )
)
