// The phone layout's bottom sheet: the map fills the screen and one sheet below it holds the
// character list, the selected character's details, the chat, the fleet board and the event log,
// one at a time (a tab each). The board and the log are dialogs on wider screens: a `Panel`
// moves their content to wherever it is shown.
// The sheet has three heights (peek: only its tabs; half; full: a strip of map stays visible),
// chosen by tapping the handle or dragging it with one thumb. On wider screens the sheet is not
// drawn (`display: contents`) and none of this applies.

const SIZES = ["peek", "half", "full"];
const PHONE = window.matchMedia("(max-width: 760px)");

export class Sheet {
  constructor(el) {
    this.el = el; // { sheet, handle, tabs: NodeList of [data-tab] buttons }
    this.panels = new Map(); // tab -> Panel shown in it
    for (const tab of el.tabs) {
      tab.addEventListener("click", () => {
        this.show(tab.dataset.tab);
        if (this.size() === "peek") this.setSize("half");
      });
    }
    el.handle.addEventListener("click", () => {
      if (this.dragged) { this.dragged = false; return; }
      const next = SIZES[(SIZES.indexOf(this.size()) + 1) % SIZES.length];
      this.setSize(next);
    });
    this.dragging(el.handle);
  }

  /** Whether the sheet is in use (a phone-sized screen). */
  active() { return PHONE.matches; }

  size() { return this.el.sheet.dataset.size; }

  tab() { return this.el.sheet.dataset.tab; }

  setSize(size) {
    this.el.sheet.dataset.size = size;
    this.el.sheet.style.height = "";
    this.el.handle.setAttribute("aria-expanded", String(size !== "peek"));
    this.el.handle.setAttribute("aria-label", `Panel: ${size}; tap to change`);
  }

  /** Shows one of `list`, `details`, `chat`, `fleet`, `events`. */
  show(tab) {
    this.el.sheet.dataset.tab = tab;
    for (const t of this.el.tabs) t.setAttribute("aria-selected", String(t.dataset.tab === tab));
    this.panels.get(tab)?.shownInSheet();
  }

  /** Follows the selection: a selected character opens its details; deselecting returns to
   * the list. */
  selected(name) {
    const details = [...this.el.tabs].find((t) => t.dataset.tab === "details");
    if (details) details.disabled = !name;
    if (name) {
      this.show("details");
      if (this.active() && this.size() === "peek") this.setSize("half");
    } else if (this.tab() === "details") {
      this.show("list");
    }
  }

  /** Dragging the handle resizes the sheet and snaps to the nearest of the three heights. */
  dragging(handle) {
    let start = null;
    handle.addEventListener("pointerdown", (e) => {
      if (!this.active()) return;
      start = { y: e.clientY, height: this.el.sheet.getBoundingClientRect().height };
      handle.setPointerCapture(e.pointerId);
    });
    handle.addEventListener("pointermove", (e) => {
      if (!start) return;
      const dy = start.y - e.clientY;
      if (Math.abs(dy) < 6 && !this.dragged) return;
      this.dragged = true;
      const max = window.innerHeight * 0.85;
      this.el.sheet.style.height = `${Math.max(48, Math.min(max, start.height + dy))}px`;
    });
    const end = () => {
      if (!start) return;
      start = null;
      if (!this.dragged) return;
      const height = this.el.sheet.getBoundingClientRect().height;
      const share = height / window.innerHeight;
      this.setSize(share < 0.25 ? "peek" : share < 0.6 ? "half" : "full");
    };
    handle.addEventListener("pointerup", end);
    handle.addEventListener("pointercancel", end);
  }
}

/** Content shown in a dialog on wide screens and as a tab of the sheet on phones (the fleet
 * board, the event log); `onShow` runs whenever it is shown. */
export class Panel {
  constructor(sheet, { tab, dialog, body, slot }, onShow) {
    this.sheet = sheet;
    this.el = { dialog, body, slot };
    this.tab = tab;
    this.onShow = onShow || (() => {});
    sheet.panels.set(tab, this);
  }

  /** Opens it where it belongs on this screen. */
  open() {
    if (this.sheet.active()) {
      this.sheet.show(this.tab);
      if (this.sheet.size() === "peek") this.sheet.setSize("half");
      return;
    }
    const { dialog, body } = this.el;
    if (body.parentElement !== dialog) dialog.insertBefore(body, dialog.querySelector("form[method=dialog]"));
    if (!dialog.open) dialog.showModal();
    this.onShow();
  }

  shownInSheet() {
    if (this.el.body.parentElement !== this.el.slot) this.el.slot.append(this.el.body);
    this.onShow();
  }

  /** Whether someone can see it now. */
  visible() {
    if (this.el.dialog.open) return true;
    return this.sheet.active() && this.sheet.tab() === this.tab && this.sheet.size() !== "peek"
      && this.el.body.parentElement === this.el.slot;
  }

  /** Closes the dialog (a choice made in it); in the sheet it stays. */
  done() {
    if (this.el.dialog.open) this.el.dialog.close();
  }
}
