#!/usr/bin/env bash
# Seeds the GGUF fuzzer with the header part (first 64 KiB) of the shared fixture models.
out="$1"
shared="${K2_SHARED_DIR:-../shared}"
for f in "$shared"/fixtures/models/*.gguf "$shared"/fixtures/tokenizer/llama-cpp-vocab/*.gguf; do
  [ -f "$f" ] || continue
  head -c 65536 "$f" > "$out/seed-$(basename "$f")"
done
exit 0
