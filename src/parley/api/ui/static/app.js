// Entry point of every signed-in page: wires "Sign out" and loads the page's module (body[data-page]).
import { content, h, leaving, showError } from "./lib.js";

const PAGES = new Set(["calls", "call", "agents", "agent", "talk", "queue", "campaigns", "campaign"]);

document.getElementById("sign-out").addEventListener("click", async () => {
  leaving.now = true;
  try {
    await fetch("/ui/sign-out", {
      method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content },
    });
  } finally {
    location.assign("/ui/sign-in");
  }
});

const page = document.body.dataset.page;
if (PAGES.has(page)) {
  import(`./pages/${page}.js`)
    .then((module) => module.render())
    .catch((error) => showError(content(), error));
} else {
  content().replaceChildren(h("p", { class: "alert" }, `unknown page ${page}`));
}
