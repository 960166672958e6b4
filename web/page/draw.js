// Each face's box and landmarks on the page's canvas, as lmk-run's draw_faces draws them.

const COLOURS = ["#00e676", "#ffab00", "#40c4ff", "#ff4081", "#e040fb", "#c6ff00"];

export function drawFaces(ctx, faces, scale = 1) {
  const radius = Math.max(1.5, 1.5 * scale);
  ctx.lineWidth = Math.max(1, scale);
  ctx.font = `${Math.round(12 * scale)}px sans-serif`;
  for (const face of faces) {
    const colour = COLOURS[Math.max(0, face.trackId) % COLOURS.length];
    const [x, y, w, h] = face.region.box;
    ctx.strokeStyle = colour;
    ctx.fillStyle = colour;
    ctx.save();
    ctx.translate(x + w / 2, y + h / 2);
    ctx.rotate(face.region.angle);
    ctx.strokeRect(-w / 2, -h / 2, w, h);
    ctx.restore();
    for (const [px, py] of face.landmarks) {
      ctx.beginPath();
      ctx.arc(px, py, radius, 0, 2 * Math.PI);
      ctx.fill();
    }
    const label = face.trackId >= 0 ? `#${face.trackId} ${face.score.toFixed(2)}` : face.score.toFixed(2);
    ctx.fillText(label, x, Math.max(12 * scale, y - 4));
  }
}

/** The user's box while it is being drawn (dashed). */
export function drawPendingBox(ctx, box) {
  ctx.save();
  ctx.setLineDash([6, 4]);
  ctx.strokeStyle = "#ffffff";
  ctx.strokeRect(...box);
  ctx.restore();
}
