// End-to-end self test of op.js + device-user.js (no Portcullis involved).
// Usage: node selftest.js      -> prints "N passed, N failed", exits non-zero on failure.
// Spawns its own op.js on a free port (OP_ACCESS_TOKEN_TTL=2, OP_DEVICE_INTERVAL=1) and
// a second one with OP_DEVICE_SLOW_DOWN=1.

import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';
import { createInterface } from 'node:readline';

const dir = path.dirname(fileURLToPath(import.meta.url));
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
let passed = 0;
let failed = 0;
function check(name, cond, detail) {
  if (cond) { passed += 1; console.log(`ok   ${name}`); } else {
    failed += 1; console.log(`FAIL ${name}${detail === undefined ? '' : `: ${JSON.stringify(detail)}`}`);
  }
}

async function startOp(env) {
  const child = spawn(process.execPath, [path.join(dir, 'op.js'), '0'], {
    env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'ignore'],
  });
  const rl = createInterface({ input: child.stdout });
  const [line] = await Promise.race([
    once(rl, 'line'),
    new Promise((_, rej) => setTimeout(() => rej(new Error('op.js did not start')), 10000)),
  ]);
  const m = /^listening (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
  if (!m) throw new Error(`unexpected op.js output: ${line}`);
  return { child, issuer: m[1] };
}

async function post(url, form, headers = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form),
  });
  return { status: res.status, json: await res.json() };
}

function runUser(uri, code, login) {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [path.join(dir, 'device-user.js'), uri, code, login], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d) => { err += d; });
    c.on('exit', (rc) => resolve({ rc, err }));
  });
}

const decode = (jwt) => {
  const [h, p] = jwt.split('.');
  return { header: JSON.parse(Buffer.from(h, 'base64url')), payload: JSON.parse(Buffer.from(p, 'base64url')) };
};
async function verifyWithJwks(jwt, jwksUri) {
  const [h, p, s] = jwt.split('.');
  const { keys } = await (await fetch(jwksUri)).json();
  const { kid } = JSON.parse(Buffer.from(h, 'base64url'));
  const jwk = keys.find((k) => k.kid === kid);
  if (!jwk) return false;
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  return crypto.verify('RSA-SHA256', Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url'));
}

const ops = [];
try {
  const op = await startOp({ OP_ACCESS_TOKEN_TTL: '2', OP_DEVICE_INTERVAL: '1' });
  ops.push(op.child);
  const { issuer } = op;
  const disco = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
  check('discovery issuer', disco.issuer === issuer, disco.issuer);
  check('device endpoint', disco.device_authorization_endpoint === `${issuer}/device/auth`);
  check('token endpoint', disco.token_endpoint === `${issuer}/token`);

  const expected = {
    alice: ['data-science'], bob: ['engineering'], carol: ['managers'], dave: ['dba'], erin: [],
  };
  let aliceTokens;
  for (const [login, groups] of Object.entries(expected)) {
    const da = await post(disco.device_authorization_endpoint, { client_id: 'portcullis-cli', scope: 'openid offline_access' });
    check(`${login}: device authorization 200`, da.status === 200 && da.json.interval === 1, da);
    const pending = await post(disco.token_endpoint, { client_id: 'portcullis-cli', grant_type: DEVICE_GRANT, device_code: da.json.device_code });
    check(`${login}: authorization_pending`, pending.status === 400 && pending.json.error === 'authorization_pending', pending);
    const user = await runUser(login === 'bob' ? da.json.verification_uri_complete : da.json.verification_uri, da.json.user_code, login);
    check(`${login}: device-user.js exit 0`, user.rc === 0, user.err);
    const tok = await post(disco.token_endpoint, { client_id: 'portcullis-cli', grant_type: DEVICE_GRANT, device_code: da.json.device_code });
    check(`${login}: token 200 with refresh_token`, tok.status === 200 && !!tok.json.refresh_token, tok);
    const { header, payload } = decode(tok.json.access_token);
    check(`${login}: header`, header.alg === 'RS256' && header.typ === 'at+jwt', header);
    check(`${login}: claims`, payload.iss === issuer && payload.aud === 'portcullis' && payload.sub === login
      && payload.preferred_username === login && JSON.stringify(payload.groups) === JSON.stringify(groups)
      && payload.client_id === 'portcullis-cli' && payload.exp - payload.iat === 2, payload);
    check(`${login}: jwks verifies`, await verifyWithJwks(tok.json.access_token, disco.jwks_uri));
    if (login === 'alice') aliceTokens = tok.json;
  }

  // expiry + refresh
  await new Promise((r) => setTimeout(r, 2500));
  const exp = decode(aliceTokens.access_token).payload.exp;
  check('alice: access token expired by now', exp < Date.now() / 1000);
  const ref = await post(disco.token_endpoint, { client_id: 'portcullis-cli', grant_type: 'refresh_token', refresh_token: aliceTokens.refresh_token });
  check('refresh 200, rotated', ref.status === 200 && ref.json.refresh_token && ref.json.refresh_token !== aliceTokens.refresh_token, ref);
  const rp = decode(ref.json.access_token).payload;
  check('refreshed claims', rp.sub === 'alice' && rp.aud === 'portcullis' && rp.groups[0] === 'data-science' && rp.exp > exp, rp);
  check('refreshed jwks verifies', await verifyWithJwks(ref.json.access_token, disco.jwks_uri));

  // client credentials
  const basic = `Basic ${Buffer.from('devin-ci:devin-ci-secret').toString('base64')}`;
  const cc = await post(disco.token_endpoint, { grant_type: 'client_credentials' }, { authorization: basic });
  check('client_credentials 200', cc.status === 200, cc);
  const cp = decode(cc.json.access_token).payload;
  check('cc claims', cp.sub === 'devin-ci' && cp.client_id === 'devin-ci' && cp.aud === 'portcullis'
    && cp.iss === issuer && JSON.stringify(cp.groups) === '["ci"]', cp);
  check('cc jwks verifies', await verifyWithJwks(cc.json.access_token, disco.jwks_uri));
  const bad = await post(disco.token_endpoint, { grant_type: 'client_credentials' }, { authorization: `Basic ${Buffer.from('devin-ci:nope').toString('base64')}` });
  check('cc wrong secret -> 401 invalid_client', bad.status === 401 && bad.json.error === 'invalid_client', bad);

  // wrong user code
  const da = await post(disco.device_authorization_endpoint, { client_id: 'portcullis-cli', scope: 'openid offline_access' });
  const wrong = await runUser(da.json.verification_uri, 'BCDF-GHJK', 'alice');
  check('device-user.js wrong code exits 1', wrong.rc === 1, wrong.err);

  // abort -> access_denied
  const abortUser = await new Promise((resolve) => {
    const c = spawn(process.execPath, [path.join(dir, 'device-user.js'), da.json.verification_uri, da.json.user_code, 'alice'], { env: { ...process.env, DEVICE_USER_ABORT: '1' }, stdio: 'ignore' });
    c.on('exit', resolve);
  });
  check('abort exit 0', abortUser === 0);
  const denied = await post(disco.token_endpoint, { client_id: 'portcullis-cli', grant_type: DEVICE_GRANT, device_code: da.json.device_code });
  check('aborted -> access_denied', denied.status === 400 && denied.json.error === 'access_denied', denied);

  // slow_down (opt-in)
  const op2 = await startOp({ OP_DEVICE_INTERVAL: '2', OP_DEVICE_SLOW_DOWN: '1' });
  ops.push(op2.child);
  const d2 = await post(`${op2.issuer}/device/auth`, { client_id: 'portcullis-cli', scope: 'openid offline_access' });
  const poll = () => post(`${op2.issuer}/token`, { client_id: 'portcullis-cli', grant_type: DEVICE_GRANT, device_code: d2.json.device_code });
  const p1 = await poll();
  const p2 = await poll();
  check('slow_down when enabled', p1.json.error === 'authorization_pending' && p2.json.error === 'slow_down', [p1, p2]);
} catch (err) {
  failed += 1;
  console.log(`FAIL exception: ${err.stack}`);
} finally {
  for (const c of ops) c.kill('SIGTERM');
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
