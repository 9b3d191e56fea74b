// Saved groups ("healers", "mule accounts"): each signed-in person's named lists of characters,
// kept on the server (`/groups`). Choosing one picks its characters for one command to all;
// the picked characters can be saved under a new name, and a group deleted.

/** What the server says went wrong, or its status. */
async function reason(resp) {
  try {
    const body = await resp.json();
    if (body && typeof body.error === "string") return body.error;
  } catch (_) { /* not JSON */ }
  return `the server answered ${resp.status}`;
}

export class Groups {
  /** `picked()`: the names picked now; `onPick(names)`; `say(text)` shows a message. */
  constructor(el, { picked, onPick, say }) {
    this.el = el; // { select, name, save, remove }
    this.picked = picked;
    this.onPick = onPick;
    this.say = say;
    this.groups = [];
    el.select.addEventListener("change", () => {
      const group = this.groups.find((g) => g.name === el.select.value);
      if (!group) return;
      this.onPick(group.characters);
      this.say(`${group.name}: ${group.characters.length} characters picked`);
    });
    el.save.addEventListener("click", () => this.save());
    el.remove.addEventListener("click", () => this.remove());
  }

  /** Loads the signed-in person's groups (none, and the controls disabled, when signed out). */
  async load() {
    let resp;
    try {
      resp = await fetch("/groups");
    } catch (err) {
      this.say(`groups unavailable: ${err.message}`);
      return;
    }
    const signedIn = resp.status !== 401;
    for (const control of [this.el.select, this.el.name, this.el.save, this.el.remove]) {
      if (control.dataset.title === undefined) control.dataset.title = control.title;
      control.disabled = !signedIn;
      control.title = signedIn ? control.dataset.title : "Sign in to keep groups";
    }
    if (!resp.ok) {
      this.groups = [];
      if (signedIn) this.say(`groups unavailable: ${await reason(resp)}`);
      this.fill();
      return;
    }
    const body = await resp.json().catch(() => ({}));
    this.groups = Array.isArray(body.groups) ? body.groups : [];
    this.fill();
  }

  fill(chosen = this.el.select.value) {
    const first = document.createElement("option");
    first.value = "";
    first.textContent = this.groups.length ? "groups…" : "groups: none saved";
    const options = this.groups.map((g) => {
      const o = document.createElement("option");
      o.value = g.name;
      o.textContent = `${g.name} (${g.characters.length})`;
      return o;
    });
    this.el.select.replaceChildren(first, ...options);
    this.el.select.value = this.groups.some((g) => g.name === chosen) ? chosen : "";
  }

  async save() {
    const name = this.el.name.value.trim() || this.el.select.value;
    const characters = this.picked();
    if (!name) { this.say("name the group first"); return; }
    if (!characters.length) { this.say("pick characters first (ctrl- or shift-click, or Pick these)"); return; }
    let resp;
    try {
      resp = await fetch(`/groups/${encodeURIComponent(name)}`, {
        method: "PUT",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ characters }),
      });
    } catch (err) {
      this.say(`not saved: ${err.message}`);
      return;
    }
    if (!resp.ok) { this.say(`not saved: ${await reason(resp)}`); return; }
    this.el.name.value = "";
    await this.load();
    this.fill(name);
    this.say(`saved ${name} (${characters.length} characters)`);
  }

  async remove() {
    const name = this.el.select.value;
    if (!name) { this.say("choose a group to delete"); return; }
    let resp;
    try {
      resp = await fetch(`/groups/${encodeURIComponent(name)}`, { method: "DELETE" });
    } catch (err) {
      this.say(`not deleted: ${err.message}`);
      return;
    }
    if (!resp.ok) { this.say(`not deleted: ${await reason(resp)}`); return; }
    await this.load();
    this.say(`deleted ${name}`);
  }
}
