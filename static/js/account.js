// Who is looking at the map: `/me` says whether this browser may read, command or manage
// accounts. The sign-in dialog posts to `/login` (the server sets an HttpOnly session cookie that
// no script here can read); signing out posts to `/logout`. Admins get the accounts dialog: the
// accounts and their roles, and the audit trail of every command sent to a plugin. Every text
// goes into the DOM through textContent.

import { formatTime } from "./format.js";

/** Sends JSON to `path` with `method`; the status and the parsed body (null when none). */
async function send(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  let data = null;
  try { data = await resp.json(); } catch { /* an empty answer */ }
  return { status: resp.status, data };
}

export class Account {
  constructor(el) {
    this.el = el;
    this.me = { may_read: false, may_command: false, is_admin: false, signed_in: false };
    el.loginForm.addEventListener("submit", (e) => { e.preventDefault(); this.submitLogin(); });
    // Without the right to read there is nothing behind the dialog: it cannot be dismissed.
    el.login.addEventListener("cancel", (e) => { if (!this.me.may_read) e.preventDefault(); });
    el.signIn.addEventListener("click", () => this.showLogin(""));
    el.signOut.addEventListener("click", () => this.signOut());
  }

  /** Asks the server who this browser is; updates the header. */
  async load() {
    try {
      const { status, data } = await send("GET", "/me");
      if (status === 200 && data) this.me = data;
    } catch { /* server unreachable: keep what was known */ }
    this.render();
    return this.me;
  }

  render() {
    const { me, el } = this;
    el.who.hidden = !me.signed_in;
    el.who.textContent = me.signed_in ? `${me.name} (${me.role})` : "";
    el.signOut.hidden = !me.signed_in;
    el.signIn.hidden = me.signed_in || !me.accounts_exist;
    el.accountsOpen.hidden = !me.is_admin;
  }

  showLogin(why) {
    this.el.why.textContent = why;
    this.el.error.textContent = "";
    if (!this.el.login.open) this.el.login.showModal();
    this.el.name.focus();
  }

  async submitLogin() {
    const name = this.el.name.value.trim();
    const password = this.el.password.value;
    this.el.submit.disabled = true;
    try {
      const { status, data } = await send("POST", "/login", { name, password });
      if (status === 200) {
        this.el.password.value = "";
        // A fresh page: the socket and every layer start again as the signed-in user.
        location.reload();
        return;
      }
      this.el.error.textContent = status === 401 ? "Wrong name or password."
        : (data && data.error) || `Sign-in failed (HTTP ${status}).`;
    } catch {
      this.el.error.textContent = "The tracker cannot be reached.";
    } finally {
      this.el.submit.disabled = false;
    }
  }

  async signOut() {
    try { await send("POST", "/logout"); } catch { /* the page reloads anyway */ }
    location.reload();
  }
}

/** The admins' dialog: accounts (add, change role, new password, remove) and the audit trail. */
export class Accounts {
  constructor(el) {
    this.el = el;
    this.before = null;
    el.open.addEventListener("click", () => this.show());
    el.add.addEventListener("submit", (e) => { e.preventDefault(); this.addAccount(); });
    el.older.addEventListener("click", () => this.loadAudit(true));
  }

  async show() {
    this.el.dialog.showModal();
    await Promise.all([this.loadAccounts(), this.loadAudit(false)]);
  }

  say(status, text) {
    this.el.message.dataset.status = status;
    this.el.message.textContent = text;
  }

  async loadAccounts() {
    const { status, data } = await send("GET", "/users");
    if (status !== 200 || !Array.isArray(data)) { this.say("error", `accounts unavailable (HTTP ${status})`); return; }
    const frag = document.createDocumentFragment();
    for (const account of data) {
      const tr = document.createElement("tr");
      tr.dataset.name = account.name;
      const name = document.createElement("td");
      name.textContent = account.name;
      const roleCell = document.createElement("td");
      const role = document.createElement("select");
      role.setAttribute("aria-label", `Role of ${account.name}`);
      for (const r of ["viewer", "commander", "admin"]) {
        const option = document.createElement("option");
        option.value = r;
        option.textContent = r;
        option.selected = r === account.role;
        role.append(option);
      }
      role.addEventListener("change", () => this.change(account.name, { role: role.value }));
      roleCell.append(role);
      const actions = document.createElement("td");
      const password = document.createElement("button");
      password.type = "button";
      password.textContent = "New password";
      password.addEventListener("click", () => {
        const next = prompt(`New password for ${account.name} (at least 10 characters)`);
        if (next) this.change(account.name, { password: next });
      });
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "Remove";
      remove.addEventListener("click", () => {
        if (confirm(`Remove ${account.name}? Its browsers are signed out.`)) this.remove(account.name);
      });
      actions.append(password, remove);
      tr.append(name, roleCell, actions);
      frag.append(tr);
    }
    this.el.body.replaceChildren(frag);
  }

  async addAccount() {
    const body = { name: this.el.name.value.trim(), role: this.el.role.value };
    if (this.el.password.value) body.password = this.el.password.value;
    const { status, data } = await send("POST", "/users", body);
    if (status === 201) {
      this.el.name.value = "";
      this.el.password.value = "";
      this.say("ok", data.password
        ? `${data.name} (${data.role}) created. Its password, shown once: ${data.password}`
        : `${data.name} (${data.role}) created.`);
      await this.loadAccounts();
    } else {
      this.say("error", (data && data.error) || `HTTP ${status}`);
    }
  }

  async change(name, body) {
    const { status, data } = await send("PATCH", `/users/${encodeURIComponent(name)}`, body);
    this.say(status === 200 ? "ok" : "error",
      status === 200 ? `${name} changed.` : (data && data.error) || `HTTP ${status}`);
    await this.loadAccounts();
  }

  async remove(name) {
    const { status, data } = await send("DELETE", `/users/${encodeURIComponent(name)}`);
    this.say(status === 204 ? "ok" : "error",
      status === 204 ? `${name} removed.` : (data && data.error) || `HTTP ${status}`);
    await this.loadAccounts();
  }

  /** The newest commands (`older`: the page after the last one shown). */
  async loadAudit(older) {
    const query = older && this.before ? `?before=${this.before}` : "";
    const { status, data } = await send("GET", `/audit${query}`);
    if (status !== 200 || !data) { this.say("error", `audit trail unavailable (HTTP ${status})`); return; }
    const frag = document.createDocumentFragment();
    for (const entry of data.entries || []) {
      const tr = document.createElement("tr");
      tr.dataset.result = entry.result;
      for (const text of [formatTime(entry.at), entry.actor, entry.character_name, entry.command, entry.result]) {
        const td = document.createElement("td");
        td.textContent = String(text ?? "");
        tr.append(td);
      }
      frag.append(tr);
    }
    if (older) this.el.audit.append(frag); else this.el.audit.replaceChildren(frag);
    this.before = data.next_before ?? null;
    this.el.older.hidden = this.before === null;
  }
}
