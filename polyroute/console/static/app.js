// The shell: marks the current page in the menu, opens the session, and runs the page's module.
import { api, startSession } from "./api.js";
import { h, replace } from "./dom.js";

const PAGES = ["overview", "fleet", "usage", "keys", "routes", "evals"];
const name = location.pathname.split("/").filter(Boolean)[1] || "overview";
const main = document.getElementById("page");

for (const link of document.querySelectorAll("#nav a")) {
  if (link.dataset.page === name) link.setAttribute("aria-current", "page");
}

document.getElementById("logout").addEventListener("click", async () => {
  await api("POST", "logout").catch(() => null);
  location.assign("/console/login");
});

async function main_() {
  if (!PAGES.includes(name)) {
    document.title = "Not found · polyroute console";
    replace(main, h("h1", {}, "No such page"),
      h("p", {}, `The console has no page named “${name}”. The menu above lists its pages.`));
    return;
  }
  await startSession();
  const page = await import(`./pages/${name}.js`);
  try {
    await page.render(main);
  } catch (err) {
    replace(main, h("p", { class: "error", role: "alert" }, String(err.message || err)));
  }
}

main_();
