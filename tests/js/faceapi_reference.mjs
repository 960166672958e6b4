// face-api.js itself (the npm package's bundled TF.js, CPU backend) on raw crops: the
// independent reference lmk's faceapi68 import is tested against.
// usage: node faceapi_reference.mjs PACKAGE_DIR CROPS.u8
//   CROPS.u8: N x 112 x 112 x 3 uint8 RGB; prints [[x0, y0, x1, y1, ...], ...] as JSON.
import * as fs from 'fs';

// The bundle picks its platform at import: without a `window` it asks for Node's `util`
// through a require() an ES module lacks; the browser platform needs only globals Node has.
globalThis.window = globalThis;
globalThis.document = {};
const [packageDir, cropsPath] = process.argv.slice(2);
const faceapi = await import(`${packageDir}/dist/face-api.esm.js`);
const tf = faceapi.tf;
await tf.setBackend('cpu');
const manifestPath = `${packageDir}/model/face_landmark_68_model-weights_manifest.json`;
const groups = JSON.parse(fs.readFileSync(manifestPath));
const shards = groups[0].paths.map((p) => fs.readFileSync(`${packageDir}/model/${p}`));
const data = Buffer.concat(shards);
const weights = tf.io.decodeWeights(
  data.buffer.slice(data.byteOffset, data.byteOffset + data.length), groups[0].weights);
const net = new faceapi.FaceLandmark68Net();
net.loadFromWeightMap(weights);
const raw = fs.readFileSync(cropsPath);
const size = 112 * 112 * 3;
const out = [];
for (let i = 0; i < raw.length / size; i += 1) {
  const pixels = Float32Array.from(raw.subarray(i * size, (i + 1) * size));
  const result = await net.forward(tf.tensor3d(pixels, [112, 112, 3]));
  out.push(Array.from(result.dataSync()));
}
process.stdout.write(JSON.stringify(out));
