// Performs the *user* half of the OAuth 2.0 Device Authorization Grant against op.js,
// exactly as a person with a browser would, but with plain HTTP (fetch + a cookie jar,
// redirects followed by hand):
//   1. open the verification page
//   2. submit the user code
//   3. confirm the device
//   4. log in as LOGIN (any password is accepted by the dev login form)
//   5. consent, if the provider asks (op.js auto-grants, so normally it does not)
//   6. stop at the "Sign-in Success" page -> exit 0
//
// Usage: node device-user.js VERIFICATION_URI USER_CODE LOGIN
//   VERIFICATION_URI may be verification_uri or verification_uri_complete.
// Exit codes: 0 success, 1 the provider refused / unexpected page, 2 usage error.
// Progress goes to stderr; on success one line "approved USER_CODE as LOGIN" goes to stdout.
// Env: DEVICE_USER_ABORT=1 presses "Abort" on the confirmation page instead (the CLI then
//      gets access_denied); DEVICE_USER_TIMEOUT_MS per-request timeout (default 10000).

const [verificationUri, userCode, login] = process.argv.slice(2);
if (!verificationUri || !userCode || !login) {
  process.stderr.write('usage: node device-user.js VERIFICATION_URI USER_CODE LOGIN\n');
  process.exit(2);
}
const ABORT = process.env.DEVICE_USER_ABORT === '1';
const TIMEOUT_MS = Number.parseInt(process.env.DEVICE_USER_TIMEOUT_MS ?? '10000', 10);

const log = (msg) => process.stderr.write(`device-user: ${msg}\n`);
function fail(msg) {
  process.stderr.write(`device-user: FAILED: ${msg}\n`);
  process.exit(1);
}

// ---------------------------------------------------------------- cookie jar (RFC 6265-ish)
// Single origin, so Domain is ignored; Path and expiry are honoured.
const jar = new Map(); // `${name}\0${path}` -> { name, value, path }

function defaultPath(url) {
  const p = url.pathname;
  if (!p.startsWith('/') || p.lastIndexOf('/') === 0) return '/';
  return p.slice(0, p.lastIndexOf('/'));
}

function storeCookies(res, url) {
  const headers = typeof res.headers.getSetCookie === 'function' ? res.headers.getSetCookie() : [];
  for (const header of headers) {
    const [pair, ...attrs] = header.split(';');
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    let path = defaultPath(url);
    let expired = false;
    for (const attr of attrs) {
      const [k, ...rest] = attr.split('=');
      const key = k.trim().toLowerCase();
      const v = rest.join('=').trim();
      if (key === 'path' && v.startsWith('/')) path = v;
      if (key === 'max-age' && Number.parseInt(v, 10) <= 0) expired = true;
      if (key === 'expires' && Date.parse(v) <= Date.now()) expired = true;
    }
    const id = `${name}\0${path}`;
    if (expired || value === '') jar.delete(id);
    else jar.set(id, { name, value, path });
  }
}

function pathMatches(requestPath, cookiePath) {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

function cookieHeader(url) {
  const matching = [...jar.values()]
    .filter((c) => pathMatches(url.pathname, c.path))
    .sort((a, b) => b.path.length - a.path.length); // longer paths first, like browsers
  return matching.map((c) => `${c.name}=${c.value}`).join('; ');
}

// ---------------------------------------------------------------- HTTP with manual redirects
async function request(method, urlString, form) {
  let url = new URL(urlString);
  let body = form ? new URLSearchParams(form).toString() : undefined;
  for (let hop = 0; hop < 20; hop += 1) {
    const headers = { accept: 'text/html', 'user-agent': 'portcullis-device-user/1' };
    const cookie = cookieHeader(url);
    if (cookie) headers.cookie = cookie;
    if (body !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
    log(`${method} ${url.pathname}${url.search}`);
    let res;
    try {
      res = await fetch(url, {
        method, headers, body, redirect: 'manual', signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (err) {
      fail(`${method} ${url.href}: ${err.cause?.message ?? err.message}`);
    }
    storeCookies(res, url);
    if ([301, 302, 303, 307, 308].includes(res.status)) {
      const location = res.headers.get('location');
      await res.arrayBuffer();
      if (!location) fail(`${res.status} redirect without Location from ${url.href}`);
      url = new URL(location, url);
      if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === 'POST')) {
        method = 'GET';
        body = undefined;
      }
      continue;
    }
    return { status: res.status, url, html: await res.text() };
  }
  fail('too many redirects');
  return undefined;
}

// ---------------------------------------------------------------- minimal HTML form parsing
const decode = (s) => s
  .replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(Number.parseInt(h, 16)))
  .replace(/&#(\d+);/g, (_, d) => String.fromCodePoint(Number.parseInt(d, 10)))
  .replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&lt;/g, '<')
  .replace(/&gt;/g, '>').replace(/&amp;/g, '&');

function attrs(tag) {
  const out = {};
  const re = /([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  let m;
  // skip the tag name
  const inner = tag.replace(/^<\s*[a-zA-Z]+/, '').replace(/\/?>$/, '');
  while ((m = re.exec(inner)) !== null) {
    out[m[1].toLowerCase()] = decode(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return out;
}

function forms(html) {
  const result = [];
  const re = /<form\b[^>]*>([\s\S]*?)<\/form>/gi;
  let m;
  while ((m = re.exec(html)) !== null) {
    const formAttrs = attrs(m[0].match(/<form\b[^>]*>/i)[0]);
    const inputs = [...m[1].matchAll(/<input\b[^>]*>/gi)].map((i) => attrs(i[0]));
    result.push({ ...formAttrs, inputs });
  }
  return result;
}

const text = (html) => decode(html.replace(/<style[\s\S]*?<\/style>/gi, '')
  .replace(/<script[\s\S]*?<\/script>/gi, '').replace(/<[^>]+>/g, ' ')).replace(/\s+/g, ' ').trim();

function describe(page) {
  const red = page.html.match(/<p class="red">([\s\S]*?)<\/p>/);
  const title = page.html.match(/<title>([\s\S]*?)<\/title>/i)?.[1]?.trim();
  return `HTTP ${page.status} at ${page.url.pathname} title=${JSON.stringify(title ?? '')}`
    + `${red ? ` message=${JSON.stringify(text(red[1]))}` : ''}; page text: ${text(page.html).slice(0, 400)}`;
}

async function submit(page, form, fill) {
  const fields = {};
  for (const input of form.inputs) {
    if (!input.name) continue;
    if (['submit', 'button', 'image'].includes(input.type)) continue;
    fields[input.name] = input.value ?? '';
  }
  Object.assign(fields, fill);
  const action = new URL(form.action || page.url.href, page.url).href;
  return request((form.method || 'get').toUpperCase(), action, fields);
}

// ---------------------------------------------------------------- the human's walk
const seen = { input: 0, confirm: 0, login: 0, consent: 0, autopost: 0 };
let page = await request('GET', verificationUri);

for (let step = 0; step < 12; step += 1) {
  const { html } = page;
  const title = html.match(/<title>([\s\S]*?)<\/title>/i)?.[1]?.trim() ?? '';

  if (/Sign-in Success/i.test(title)) {
    log(`success page reached: ${text(html).slice(0, 200)}`);
    process.stdout.write(`approved ${userCode} as ${login}\n`);
    process.exit(0);
  }
  if (/oops! something went wrong/i.test(title) || page.status >= 400) {
    fail(`provider error page: ${describe(page)}`);
  }

  const all = forms(html);
  const has = (pred) => all.find((f) => f.inputs.some(pred));
  const inputForm = all.find((f) => f.id === 'op.deviceInputForm')
    ?? has((i) => i.name === 'user_code' && (i.type ?? 'text') === 'text');
  const confirmForm = all.find((f) => f.id === 'op.deviceConfirmForm')
    ?? has((i) => i.name === 'confirm');
  const loginForm = has((i) => i.name === 'prompt' && i.value === 'login');
  const consentForm = has((i) => i.name === 'prompt' && i.value === 'consent');

  if (/Sign-out Success|aborted/i.test(title) || /The Sign-in request was interrupted/.test(html)) {
    if (ABORT && seen.confirm) {
      log('aborted as requested (DEVICE_USER_ABORT=1)');
      process.stdout.write(`aborted ${userCode}\n`);
      process.exit(0);
    }
    fail(`interaction aborted: ${describe(page)}`);
  }

  if (inputForm) {
    if (seen.input++ > 0) fail(`user code rejected: ${describe(page)}`);
    log('verification page: submitting user code');
    page = await submit(page, inputForm, { user_code: userCode });
  } else if (confirmForm) {
    if (seen.confirm++ > 0) fail(`confirmation page shown twice: ${describe(page)}`);
    if (ABORT) {
      log('confirmation page: pressing Abort');
      const fields = { abort: 'yes' };
      page = await submit(page, { ...confirmForm, inputs: confirmForm.inputs.filter((i) => i.name !== 'confirm') }, fields);
    } else {
      log('confirmation page: confirming device');
      page = await submit(page, confirmForm, {});
    }
  } else if (loginForm) {
    if (seen.login++ > 0) fail(`login form shown twice: ${describe(page)}`);
    log(`login page: signing in as ${login}`);
    page = await submit(page, loginForm, { login, password: 'any-password' });
  } else if (consentForm) {
    if (seen.consent++ > 0) fail(`consent form shown twice: ${describe(page)}`);
    log('consent page: granting');
    page = await submit(page, consentForm, {});
  } else if (all.length === 1 && /Submitting Callback/i.test(title)) {
    // auto-submitting form_post page (used for verification_uri_complete)
    if (seen.autopost++ > 2) fail(`form_post loop: ${describe(page)}`);
    log('auto-submit page: posting');
    page = await submit(page, all[0], {});
  } else {
    fail(`unexpected page: ${describe(page)}`);
  }
}
fail(`did not reach the success page: ${describe(page)}`);
