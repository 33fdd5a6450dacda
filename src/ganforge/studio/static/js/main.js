// The studio's single page: a hash router over five pages, each a module with show()/hide().
import { api, clearError, showError } from "./api.js";
import * as datasets from "./datasets.js";
import * as jobs from "./jobs.js";
import * as models from "./models.js";
import * as play from "./playground.js";
import * as train from "./train.js";

const PAGES = { datasets, train, jobs, models, play };
let current = null;

function route() {
  const [name, arg] = (location.hash.slice(1) || "datasets").split("/");
  const page = PAGES[name] ? name : "datasets";
  if (current && current !== page) PAGES[current].hide?.();
  for (const section of document.querySelectorAll(".page")) section.hidden = section.id !== `page-${page}`;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  current = page;
  clearError();
  PAGES[page].show(arg).catch(showError);
}

function showLogin() {
  for (const section of document.querySelectorAll(".page")) section.hidden = section.id !== "page-login";
  document.getElementById("login-token").focus();
}

async function start() {
  document.getElementById("error-close").addEventListener("click", clearError);
  window.addEventListener("studio:login", showLogin);
  document.getElementById("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("/api/session", { method: "POST", body: { token: document.getElementById("login-token").value } });
      route();
    } catch (err) { showError(err); }
  });
  for (const mod of Object.values(PAGES)) mod.init?.();
  window.addEventListener("hashchange", route);
  const session = await api("/api/session");
  if (session.token_required && !session.authenticated) showLogin();
  else route();
}

start().catch(showError);
