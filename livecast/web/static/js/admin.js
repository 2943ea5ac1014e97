// Admin page: every account with its role, coins and disabled state; change the role,
// disable or enable, grant coins.
import { announce, api, apiAll, h, loginHref, renderNav, replace } from "./common.js";

const ROLES = ["viewer", "streamer", "admin"];
const $ = (id) => document.getElementById(id);
let me = null;
let users = [];

function showError(err) {
  $("admin-error").textContent = err ? err.message : "";
}

async function patchUser(user, changes) {
  showError(null);
  try {
    const { user: updated } = await api("PATCH", `/api/v1/admin/users/${encodeURIComponent(user.username)}`, changes);
    Object.assign(user, updated);
    announce(`${user.username} updated.`);
  } catch (err) {
    showError(err);
  }
  render();
}

async function grant(user, input) {
  showError(null);
  const amount = Number(input.value);
  try {
    const { user: updated } = await api("POST", `/api/v1/admin/users/${encodeURIComponent(user.username)}/coins`,
      { amount: Number.isInteger(amount) ? amount : input.value });
    Object.assign(user, updated);
    announce(`Granted ${amount} coins to ${user.username}.`);
  } catch (err) {
    showError(err);
  }
  render();
}

function row(user) {
  const self = user.id === me.id;
  const id = `user-${user.id}`;
  const role = h("select", { id: `${id}-role`, "aria-label": `Role of ${user.username}`, disabled: self },
    ...ROLES.map((r) => h("option", { value: r, selected: r === user.role }, r)));
  role.addEventListener("change", () => patchUser(user, { role: role.value }));
  const amount = h("input", {
    id: `${id}-amount`, type: "number", min: "1", max: "1000000", value: "100",
    "aria-label": `Coins to grant to ${user.username}`,
  });
  return h("tr", { dataset: { username: user.username } },
    h("th", { scope: "row" }, user.username, self ? h("span", { class: "tag" }, "you") : null,
      user.email ? h("div", { class: "muted small" }, user.email) : null),
    h("td", {}, role),
    h("td", { class: "coins" }, String(user.coins)),
    h("td", {},
      h("span", { class: `badge ${user.disabled ? "badge-live" : "badge-offline"}` }, user.disabled ? "disabled" : "active"),
      " ",
      self ? null : h("button", {
        type: "button", class: "link",
        onclick: () => {
          if (!user.disabled && !window.confirm(`Disable ${user.username}? They are logged out everywhere at once.`)) return;
          patchUser(user, { disabled: !user.disabled });
        },
      }, user.disabled ? "Enable" : "Disable")),
    h("td", {}, h("form", {
      class: "inline-form",
      onsubmit: (event) => {
        event.preventDefault();
        grant(user, amount);
      },
    }, amount, h("button", { type: "submit", class: "btn" }, "Grant"))));
}

function render() {
  const filter = $("user-filter").value.trim().toLowerCase();
  const shown = users.filter((u) => !filter || u.username.toLowerCase().includes(filter));
  replace($("users"), ...shown.map(row));
}

async function main() {
  me = await renderNav();
  if (!me) {
    window.location.replace(loginHref());
    return;
  }
  if (me.role !== "admin") {
    $("admin-message").textContent = "This page is for administrators.";
    $("admin-message").hidden = false;
    return;
  }
  $("admin").hidden = false;
  users = await apiAll("/api/v1/admin/users", "users", 100);
  render();
  $("user-filter").addEventListener("input", render);
}

main().catch((err) => {
  $("admin-message").textContent = `The accounts could not load: ${err.message}`;
  $("admin-message").hidden = false;
});
