// Real-browser scenarios against `ferrygate demo`'s parts, driven by
// playwright-core in Debian's headless Chromium. Started by tests/browser.rs,
// which passes the addresses in the environment; prints one line per scenario
// and exits non-zero if any failed.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const BASE = process.env.BASE_URL;              // http://127.0.0.1:PORT  (Northwind, qwyk)
const PORT = new URL(BASE).port;
const NEWS = `http://localhost:${PORT}`;         // The Daily Courant (payway)
const INTRANET = `http://intranet.localhost:${PORT}`; // Contoso (rest)
const SSO = `http://sso.localhost:${PORT}`;           // Fabrikam (oidc)
const ATTACKER = process.env.ATTACKER_URL;       // another origin with a hostile form
const SHOTS = process.env.SCREENSHOT_DIR;
const EMAIL = process.env.DEMO_EMAIL;
const PASSWORD = process.env.DEMO_PASSWORD;
const EMAIL2 = process.env.DEMO_EMAIL2; // a second account, without the admins group
mkdirSync(SHOTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic'],
});

function check(cond, what) {
  if (!cond) throw new Error(what);
}

async function signIn(page, url, email, password) {
  await page.goto(url);
  await page.fill('#email', email);
  await page.fill('#password', password);
  await Promise.all([page.waitForLoadState('load'), page.click('button[type=submit]')]);
}

const scenarios = {
  async qwyk_login_returning_user_logout(page) {
    await signIn(page, `${BASE}/login`, EMAIL, PASSWORD);
    await page.waitForURL(/\/auth\/external\?token=/);
    check((await page.textContent('#signed-in')).includes('Signed in as Alice'), 'the portal shows the user');
    check((await page.textContent('#destination')) === '/my-portal', 'the default destination');
    check(/\d+h \d\dm/.test(await page.textContent('#expires')), 'the token expiry is shown');
    await page.screenshot({ path: `${SHOTS}/qwyk-portal.png` });
    // Back to the site's login page: straight into the portal again (returning user).
    await page.goto(`${BASE}/login`);
    await page.waitForURL(/\/auth\/external\?token=/);
    check((await page.textContent('#signed-in')).includes('Signed in as Alice'), 'returning user lands in the portal');
    // The portal's Logout button comes back to Ferrygate, which ends the session.
    await Promise.all([page.waitForURL(`${BASE}/goodbye`), page.click('text=Logout >> nth=0')]);
    check((await page.textContent('h2')).includes('You are signed out'), 'the goodbye page');
    await page.goto(`${BASE}/login`);
    check(await page.isVisible('#email'), 'the login form shows again after logout');
    await page.screenshot({ path: `${SHOTS}/qwyk-after-logout.png` });
  },

  async qwyk_wrong_password(page) {
    await signIn(page, `${BASE}/login`, EMAIL, 'not-the-password');
    await page.waitForURL(/\/login\?error=invalid_credentials/);
    check((await page.textContent('.error')).includes('do not match'), 'a friendly error');
    check((await page.inputValue('#password')) === '', 'the password field is empty');
    await page.screenshot({ path: `${SHOTS}/qwyk-wrong-password.png` });
  },

  async qwyk_booking_wizard(page) {
    await page.goto(`${BASE}/book`);
    await page.fill('#origin', 'NLRTM');
    await page.fill('#destination_port', 'USNYC');
    await page.selectOption('#cargo_type', 'reefer');
    await page.selectOption('#product', 'lcl');
    await page.fill('#wemail', EMAIL);
    await page.fill('#wpassword', PASSWORD);
    await Promise.all([page.waitForURL(/\/auth\/external\?token=/), page.click('button[type=submit]')]);
    const destination = await page.textContent('#destination');
    check(destination === '/my-portal/quotations/new?origin=NLRTM&destination_port=USNYC&cargo_type=reefer&product=lcl',
      `the wizard destination with the routing fields, got ${destination}`);
    await page.screenshot({ path: `${SHOTS}/qwyk-wizard.png` });
  },

  async payway_login_handle_and_state(page) {
    await signIn(page, `${NEWS}/login`, EMAIL, PASSWORD);
    await page.waitForURL(new RegExp(`^${NEWS}/landing\\?code=`));
    check((await page.textContent('#welcome')).includes('Welcome back'), 'the landing page after authorization');
    check((await page.textContent('#state')).includes('verified by Ferrygate'), 'the state was checked');
    await page.screenshot({ path: `${SHOTS}/payway-landing.png` });
    // Reloading the landing page replays the state: refused.
    const replay = await page.reload();
    check(replay.status() === 403, `a replayed state is refused, got ${replay.status()}`);
  },

  async rest_protected_page_and_forgot_password(page) {
    await page.goto(`${INTRANET}/app`);
    await page.waitForURL(/\/login\?destination=%2Fapp/);
    await page.fill('#email', EMAIL);
    await page.fill('#password', PASSWORD);
    await Promise.all([page.waitForURL(`${INTRANET}/app`), page.click('button[type=submit]')]);
    check((await page.textContent('#user')) === EMAIL, 'the protected page shows the identity');
    check((await page.textContent('#user-id')) === '1001', 'with the directory user id');
    await page.screenshot({ path: `${SHOTS}/rest-workspace.png` });
    const messages = [];
    for (const email of [EMAIL, 'nobody@example.com']) {
      await page.goto(`${INTRANET}/forgot-password`);
      await page.fill('#email', email);
      await Promise.all([page.waitForURL(/sent=1/), page.click('button[type=submit]')]);
      messages.push(await page.textContent('#forgot-sent'));
    }
    check(messages[0] === messages[1], 'the same message for a known and an unknown email');
    await page.screenshot({ path: `${SHOTS}/rest-forgot-password.png` });
  },

  async authorization_rule_admits_admins_only(page) {
    // Alice is in the directory's admins group: the admin page opens.
    await page.goto(`${INTRANET}/admin`);
    await page.waitForURL(/\/login\?destination=%2Fadmin/);
    await page.fill('#email', EMAIL);
    await page.fill('#password', PASSWORD);
    await Promise.all([page.waitForLoadState('load'), page.click('button[type=submit]')]);
    await page.goto(`${INTRANET}/admin`);
    check((await page.textContent('#groups')).includes('admins'), 'the admin page shows the groups');
    await page.screenshot({ path: `${SHOTS}/rest-admin.png` });
  },

  async authorization_rule_shuts_out_others(page) {
    // Bob is staff only: signed in, but /admin answers 403 forbidden.
    await signIn(page, `${INTRANET}/login`, EMAIL2, PASSWORD);
    const response = await page.goto(`${INTRANET}/admin`);
    check(response.status() === 403, `a user outside the rule's groups is refused, got ${response.status()}`);
    check((await page.textContent('body')).includes('forbidden'), 'the refusal names forbidden');
    await page.screenshot({ path: `${SHOTS}/rest-forbidden.png` });
  },

  async oidc_staff_portal_sign_in_and_group_rule(page) {
    await page.goto(`${SSO}/workspace`);
    await page.waitForURL(/\/login\?destination=%2Fworkspace/);
    await page.fill('#email', EMAIL);
    await page.fill('#password', 'not-the-password');
    await Promise.all([page.waitForURL(/error=invalid_credentials/), page.click('button[type=submit]')]);
    check(await page.isVisible('.error'), 'a wrong password shows the error');
    check((await page.inputValue('#password')) === '', 'and an empty password field');
    await page.fill('#email', EMAIL);
    await page.fill('#password', PASSWORD);
    await Promise.all([page.waitForURL(`${SSO}/workspace`), page.click('button[type=submit]')]);
    check((await page.textContent('#user')) === EMAIL, 'the workspace shows the identity from the ID token');
    check((await page.textContent('#groups')) === 'admins,staff', 'with the groups claim');
    check((await page.textContent('#bearer')).startsWith('received'), 'and the access token reaches the site');
    await page.screenshot({ path: `${SHOTS}/oidc-workspace.png` });
    await page.click('text=Administration');
    await page.waitForURL(`${SSO}/admin`);
    check((await page.textContent('#admin')) === 'Administration', 'an admin opens the admin page');
    await page.goto(`${SSO}/logout`);
    await page.waitForURL(`${SSO}/`);
    const again = await page.goto(`${SSO}/workspace`);
    check(again.url().includes('/login?destination='), 'signed out: the workspace asks to sign in again');
  },

  async cross_site_post_is_refused(page) {
    const response = await Promise.all([
      page.waitForResponse(r => r.url() === `${BASE}/login`),
      page.goto(ATTACKER),
    ]).then(([r]) => r);
    check(response.status() === 403, `the cross-site login post is refused, got ${response.status()}`);
    await page.waitForLoadState('load');
    check((await page.textContent('body')).includes('origin_rejected'), 'the refusal names origin_rejected');
    await page.screenshot({ path: `${SHOTS}/cross-site-refused.png` });
  },
};

let failed = 0;
for (const [name, run] of Object.entries(scenarios)) {
  // A fresh browser context per scenario: no cookies carried between them.
  const context = await browser.newContext();
  const page = await context.newPage();
  const started = Date.now();
  try {
    await run(page);
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL ${name}: ${e.message.split('\n')[0]}`);
    await page.screenshot({ path: `${SHOTS}/FAILED-${name}.png` }).catch(() => {});
  }
  await context.close();
}
await browser.close();
process.exit(failed ? 1 : 0);
