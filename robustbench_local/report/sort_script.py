"""The few lines of inline script that let report.html sort any table by any column:
a click on a header sorts by it, a second click reverses. A cell sorts by the number
it starts with ('45.2 [42.1, 48.3] n=1000' by 45.2), else as text with the numbers in
it compared as numbers; empty and '-' cells go last either way. Inline, with nothing
fetched, so the page stays one self-contained file."""

SORT_CSS = """
th.sortable { cursor: pointer; user-select: none; }
th.sortable:hover { background: #eaeef2; }
th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: 9px; }
th[aria-sort="descending"]::after { content: " \\25BC"; font-size: 9px; }
"""

SORT_SCRIPT = """<script>
(() => {
  const key = (td) => {
    const s = td ? td.textContent.trim() : "";
    const m = s.match(/^[+\\u2212-]?\\d+(\\.\\d+)?/);
    if (m) return [0, parseFloat(m[0].replace("\\u2212", "-")), s];
    return [s === "" || s === "-" ? 2 : 1, 0, s];
  };
  const cmp = (a, b, dir) =>
    a[0] - b[0] || dir * (a[1] - b[1] || a[2].localeCompare(b[2], undefined, {numeric: true}));
  for (const table of document.querySelectorAll("table")) {
    const head = table.rows[0];
    if (!head || [...head.cells].some((c) => c.tagName !== "TH")) continue;
    [...head.cells].forEach((th, i) => {
      th.classList.add("sortable");
      th.title = "sort by " + th.textContent;
      th.addEventListener("click", () => {
        const dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        for (const c of head.cells) c.removeAttribute("aria-sort");
        th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
        const rows = [...table.rows].slice(1).map((r) => [key(r.cells[i]), r]);
        rows.sort((a, b) => cmp(a[0], b[0], dir));
        for (const [, r] of rows) r.parentNode.appendChild(r);
      });
    });
  }
})();
</script>
"""
