#!/usr/bin/env bash
# Extracts the King James Version text from Debian's bible-kjv-text package into plain prose for
# tools/demo_model/train.py.
#
# Output (default: <repo>/.device/demo/corpus.txt, git-ignored, carried to the GPU machine):
#   one verse per line, verse references ("Ge1:1") stripped, a blank line between chapters
#   (train.py treats each chapter as one document). ASCII only, about 4.3 MB.
#
# Usage: tools/demo_model/extract_corpus.sh [OUTPUT]
# Needs: apt-get install -y bible-kjv-text (it pulls in bible-kjv, whose `bible` program
#        decompresses /usr/lib/bible.data).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:-$repo_root/.device/demo/corpus.txt}"

if ! command -v bible >/dev/null 2>&1 || [ ! -f /usr/lib/bible.data ]; then
  echo "extract_corpus.sh: the 'bible' program or /usr/lib/bible.data is missing;" \
       "run: apt-get install -y bible-kjv-text" >&2
  exit 1
fi

mkdir -p "$(dirname "$out")"
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT

# -f turns pretty-printing off: one verse a line, each preceded by its reference, e.g.
#   "Ge1:1 In the beginning God created the heaven and the earth."
# The data file is found in /usr/lib; run from / so a stray ./bible.data is never picked up.
(cd / && bible -f 'Gen1:1-Rev22:21' </dev/null) >"$tmp"

# Reference = optional leading digit (1Co, 2Ki), book letters, chapter, ':', verse.
awk '
  match($0, /^[0-9]?[A-Za-z]+[0-9]+:[0-9]+ /) {
    ref = substr($0, 1, RLENGTH - 1)
    text = substr($0, RLENGTH + 1)
    chapter = ref; sub(/:[0-9]+$/, "", chapter)
    if (NR > 1 && chapter != last) print ""
    last = chapter
    print text
    verses++
    next
  }
  {
    printf "extract_corpus.sh: line %d has no verse reference: %s\n", NR, $0 > "/dev/stderr"
    bad = 1; exit 1
  }
  END {
    if (!bad && verses != 31102) {
      printf "extract_corpus.sh: expected 31102 verses, got %d\n", verses > "/dev/stderr"; exit 1
    }
  }
' "$tmp" >"$out"

chapters=$(( $(grep -c '^$' "$out") + 1 ))
echo "wrote $out: $(wc -c <"$out") bytes, 31102 verses, $chapters chapters, sha256 $(sha256sum "$out" | cut -d' ' -f1)" >&2
