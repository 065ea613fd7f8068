// Text below WCAG AA contrast on the page: every text node shown, its colour composed over its background (alpha
// layers and opacities), 4.5:1 needed, 3:1 for large text. Used by tests/test_app.py.
() => {
  const parse = c => { const m = c && c.match(/rgba?\(([^)]+)\)/); if (!m) return null;
    const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(parseFloat); return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = ({r, g, b}) => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const over = (c, under) => ({r: c.r * c.a + under.r * (1 - c.a), g: c.g * c.a + under.g * (1 - c.a), b: c.b * c.a + under.b * (1 - c.a)});
  const background = el => { const layers = [];
    for (let e = el; e; e = e.parentElement) { const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; } }
    let out = {r: 255, g: 255, b: 255}; for (let i = layers.length - 1; i >= 0; i--) out = over(layers[i], out); return out; };
  const bad = []; const seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode; const text = node.textContent.trim(); if (!text) continue;
    const el = node.parentElement; const st = getComputedStyle(el);
    if (st.visibility === 'hidden' || st.display === 'none' || el.closest('[hidden], .hidden, script, style, .katex-mathml')) continue;
    const box = el.getBoundingClientRect(); if (!box.width || !box.height) continue;
    const fg = parse(st.color); if (!fg) continue;
    let opacity = 1; for (let e = el; e; e = e.parentElement) opacity *= parseFloat(getComputedStyle(e).opacity);
    if (opacity < 0.05) continue; fg.a *= opacity;
    const bg = background(el); const f = over(fg, bg);
    const l1 = lum(f), l2 = lum(bg); const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    const size = parseFloat(st.fontSize), bold = parseInt(st.fontWeight) >= 700;
    const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    const key = text.slice(0, 30) + st.color;
    if (ratio < need && !seen.has(key)) { seen.add(key);
      bad.push({text: text.slice(0, 40), ratio: +ratio.toFixed(2), size, color: st.color,
        bg: `rgb(${bg.r | 0},${bg.g | 0},${bg.b | 0})`, cls: String(el.className).slice(0, 60)}); }
  }
  return bad;
}
