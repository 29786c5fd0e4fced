// A line diff for the history page: the lines of `before` and `after`, each marked
// as kept (' '), removed ('-') or added ('+'). Longest common subsequence after
// trimming the common head and tail, which is what a person edits between versions;
// past a size bound the middle is shown as removed-then-added instead of stalling the tab.

const MAX_CELLS = 4_000_000

/**
 * @param {string} before
 * @param {string} after
 * @returns {{op: ' ' | '-' | '+', line: string}[]}
 */
export function lineDiff (before, after) {
  const a = lines(before)
  const b = lines(after)
  let head = 0
  while (head < a.length && head < b.length && a[head] === b[head]) head++
  let tail = 0
  while (tail < a.length - head && tail < b.length - head &&
         a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++
  const midA = a.slice(head, a.length - tail)
  const midB = b.slice(head, b.length - tail)
  const out = a.slice(0, head).map((line) => ({ op: ' ', line }))
  if (midA.length * midB.length > MAX_CELLS) {
    for (const line of midA) out.push({ op: '-', line })
    for (const line of midB) out.push({ op: '+', line })
  } else {
    out.push(...lcsDiff(midA, midB))
  }
  for (const line of a.slice(a.length - tail)) out.push({ op: ' ', line })
  return out
}

/** Lines of `text`; a final newline ends the last line rather than starting an empty one. */
function lines (text) {
  if (text === '') return []
  const out = text.split('\n')
  if (out[out.length - 1] === '') out.pop()
  return out
}

function lcsDiff (a, b) {
  const n = a.length
  const m = b.length
  // lengths[i][j] = LCS length of a[i:] and b[j:], one flat array for speed.
  const w = m + 1
  const lengths = new Uint32Array((n + 1) * w)
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lengths[i * w + j] = a[i] === b[j]
        ? lengths[(i + 1) * w + j + 1] + 1
        : Math.max(lengths[(i + 1) * w + j], lengths[i * w + j + 1])
    }
  }
  const out = []
  let i = 0
  let j = 0
  while (i < n && j < m) {
    if (a[i] === b[j]) { out.push({ op: ' ', line: a[i] }); i++; j++ } else if (lengths[(i + 1) * w + j] >= lengths[i * w + j + 1]) { out.push({ op: '-', line: a[i++] }) } else { out.push({ op: '+', line: b[j++] }) }
  }
  while (i < n) out.push({ op: '-', line: a[i++] })
  while (j < m) out.push({ op: '+', line: b[j++] })
  return out
}
