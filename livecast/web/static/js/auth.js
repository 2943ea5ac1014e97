// Login and sign-up forms. The API sets the session cookie on login; validation errors
// ({"error": {"code", "message", "field"}}) are shown next to the field they name.
import { api, clearFormErrors, nextPath, renderNav, showFormError } from "./common.js";

function values(form) {
  const data = {};
  for (const [key, value] of new FormData(form).entries()) data[key] = value;
  return data;
}

async function logIn(username, password) {
  const { user } = await api("POST", "/api/v1/auth/login", { username, password });
  return user;
}

function landing(user) {
  const fallback = user && (user.role === "streamer" || user.role === "admin") ? "/dashboard" : "/";
  return nextPath(fallback);
}

function busy(form, on) {
  const button = form.querySelector("button[type=submit]");
  button.disabled = on;
  form.setAttribute("aria-busy", on ? "true" : "false");
}

function wire(form, submit) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFormErrors(form);
    busy(form, true);
    try {
      const user = await submit(values(form));
      window.location.assign(landing(user));
    } catch (err) {
      showFormError(form, err);
      busy(form, false);
    }
  });
}

const loginForm = document.getElementById("login-form");
const registerForm = document.getElementById("register-form");

if (loginForm) {
  wire(loginForm, ({ username, password }) => logIn(username.trim(), password));
}
if (registerForm) {
  wire(registerForm, async ({ username, password, email }) => {
    const body = { username: username.trim(), password };
    if (email && email.trim()) body.email = email.trim();
    await api("POST", "/api/v1/auth/register", body);
    return logIn(body.username, password);
  });
}

// Keep ?next= when switching between the two forms.
const next = new URLSearchParams(window.location.search).get("next");
for (const id of ["register-link", "login-link"]) {
  const link = document.getElementById(id);
  if (link && next) link.href = `${link.getAttribute("href")}?next=${encodeURIComponent(nextPath())}`;
}

renderNav().then((user) => {
  if (user) window.location.replace(landing(user));
});
