// The Self-Assessment Manikin (Bradley & Lang, 1994), drawn here as inline SVG: five figures per
// scale with the rating points on them and between them (1..9 places 1, 3, 5, 7, 9 on the
// figures). Valence goes from a frowning to a smiling figure; arousal from a calm, sleepy figure
// to an excited one with wide eyes and a growing "explosion" in its belly; dominance from a
// small figure to a large one. Drawn after the published figures, not copied from them.
"use strict";

const SAM_SCALES = ["valence", "arousal", "dominance"];
const SAM_FIGURES = 5;

// The figure's outline in a 100 x 120 box: a round head on a broad body, arms out, short legs.
const SAM_BODY = "M40 48C30 50 22 54 16 62L8 74Q10 80 16 78L28 68L30 96L28 112Q28 116 34 116L44 116L48 100" +
  "L52 100L56 116L66 116Q72 116 72 112L70 96L72 68L84 78Q90 80 92 74L84 62C78 54 70 50 60 48Z";
const SAM_GROUND = 118;

function samNumber(x) { return Math.round(x * 10) / 10; }

function samDotEyes() {
  return '<circle class="eye" cx="42" cy="25" r="2.8"/><circle class="eye" cx="58" cy="25" r="2.8"/>';
}

// Valence, level 0..1: the mouth bends from a frown to a smile, the brows from sad to relaxed.
function samValenceFace(level) {
  const c = level * 2 - 1;
  const corner = samNumber(37 - 2 * c), bend = samNumber(37 + 12 * c);
  const inner = samNumber(17 - 3 * Math.max(0, -c));
  return samDotEyes() +
    `<path class="line" d="M37 ${corner}Q50 ${bend} 63 ${corner}"/>` +
    (c < -0.2 ? `<path class="line" d="M36 19L45 ${inner}M64 19L55 ${inner}"/>` : "");
}

// Arousal, level 0..1: eyes from closed to wide open, mouth from shut to open, the star in the
// belly from a dot to most of the body, and shaking lines around the most excited figures.
function samArousalFace(level) {
  let eyes;
  if (level < 0.15) eyes = '<path class="line" d="M37 25Q42 28 47 25M53 25Q58 28 63 25"/>';
  else {
    const ry = samNumber(0.8 + 3.4 * level);
    eyes = `<ellipse class="eye-open" cx="42" cy="25" rx="3.2" ry="${ry}"/>` +
           `<ellipse class="eye-open" cx="58" cy="25" rx="3.2" ry="${ry}"/>` +
           '<circle class="eye" cx="42" cy="25" r="1.2"/><circle class="eye" cx="58" cy="25" r="1.2"/>';
  }
  const mouth = level < 0.4 ? '<path class="line" d="M45 38L55 38"/>'
    : `<ellipse class="eye-open" cx="50" cy="38" rx="${samNumber(2 + 2.5 * level)}" ry="${samNumber(4 * level - 0.6)}"/>`;
  return eyes + mouth;
}

function samExplosion(level) {
  if (level < 0.1) return '<circle class="burst" cx="50" cy="82" r="2"/>';
  const outer = 3 + 17 * level, inner = outer * 0.45, spikes = 10;
  const points = [];
  for (let i = 0; i < spikes * 2; i++) {
    const r = i % 2 ? inner : outer, a = (Math.PI * i) / spikes - Math.PI / 2;
    points.push(`${samNumber(50 + r * Math.cos(a))},${samNumber(82 + r * Math.sin(a))}`);
  }
  return `<polygon class="burst" points="${points.join(" ")}"/>`;
}

function samShaking(level) {
  const lines = Math.round(Math.max(0, level - 0.5) * 6);
  let d = "";
  for (let i = 0; i < lines; i++) {
    const x = 24 - 7 * i, y = 12 + 10 * i;
    d += `M${x} ${y}l-3 4l3 4l-3 4M${100 - x} ${y}l3 4l-3 4l3 4`;
  }
  return d ? `<path class="shake" d="${d}"/>` : "";
}

// The SVG of one manikin: `scale` (valence, arousal, dominance) at `level` 0..1.
function samFigure(scale, level) {
  let face = samDotEyes() + '<path class="line" d="M44 37L56 37"/>', inside = "", around = "", transform = "";
  if (scale === "valence") face = samValenceFace(level);
  else if (scale === "arousal") { face = samArousalFace(level); inside = samExplosion(level); around = samShaking(level); }
  else if (scale === "dominance") {
    const s = samNumber(0.4 + 0.6 * level);
    transform = ` transform="translate(50 ${SAM_GROUND}) scale(${s}) translate(-50 -${SAM_GROUND})"`;
  }
  return `<svg class="sam-figure" viewBox="0 0 100 122" aria-hidden="true" focusable="false" data-level="${samNumber(level * 100)}">` +
    (scale === "dominance" ? `<path class="ground" d="M4 ${SAM_GROUND}H96"/>` : "") +
    `<g${transform}><path class="body" d="${SAM_BODY}"/><circle class="head" cx="50" cy="28" r="20"/>` +
    face + inside + around + "</g></svg>";
}

// Where point `value` of 1..points sits: on a figure (its level) or between two (null).
function samPoint(value, points) {
  const level = points > 1 ? (value - 1) / (points - 1) : 0.5;
  const gaps = SAM_FIGURES - 1;
  // 9 (or 5, 13...) points fit the five figures with points between; any other count gets a
  // figure of its own level at every point.
  const onFigure = (points - 1) % gaps !== 0 || (value - 1) % ((points - 1) / gaps) === 0;
  return { level, onFigure };
}

function samFill(template, values) {
  return template.replace(/\{(\w+)\}/g, (_, key) => values[key]);
}

// The spoken description of a point, in the participant's language (`t` looks texts up).
function samDescription(scale, value, points, t) {
  const words = t(`${scale}_words`);
  const { level, onFigure } = samPoint(value, points);
  const at = level * (SAM_FIGURES - 1);
  const desc = onFigure ? words[Math.round(at)]
    : samFill(t("between"), { a: words[Math.floor(at)], b: words[Math.ceil(at)] });
  return samFill(t("point"), { scale: t(scale), n: value, points, desc });
}

// The buttons of one SAM scale: a figure on each figure point, a dot between.
function samButtons(scale, points, t) {
  let html = "";
  for (let v = 1; v <= points; v++) {
    const { level, onFigure } = samPoint(v, points);
    const picture = onFigure ? samFigure(scale, level)
      : '<svg class="sam-between" viewBox="0 0 20 122" aria-hidden="true" focusable="false"><circle cx="10" cy="82" r="5"/></svg>';
    html += `<button type="button" role="radio" aria-checked="false" class="${onFigure ? "figure" : "between"}" ` +
            `data-scale="${scale}" data-value="${v}" aria-label="${samDescription(scale, v, points, t)}">` +
            `${picture}<span class="n" aria-hidden="true">${v}</span></button>`;
  }
  return html;
}
