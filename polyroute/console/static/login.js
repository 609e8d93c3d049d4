// The login form: the admin key goes to /console/api/login once; the session comes back as a cookie,
// and the page the login was asked from opens.
// The button stays disabled until this module runs, so the form is never submitted natively.
const form = document.getElementById("login");
const error = document.getElementById("login-error");
const button = form.querySelector("button");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.hidden = true;
  button.disabled = true;
  const secret = form.elements.secret.value;
  try {
    const answer = await fetch("/console/api/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ secret }),
    });
    form.elements.secret.value = "";
    // Read to its end before leaving the page, so the browser has nothing to cancel.
    const doc = await answer.json().catch(() => ({}));
    if (answer.ok) {
      location.assign(nextPage());
      return;
    }
    error.textContent = doc.error?.message || `Login failed (${answer.status})`;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
});
button.disabled = false;

// Where the login was asked from (``?next=``), if it is a console page of this gateway; else the Overview.
function nextPage() {
  const asked = new URLSearchParams(location.search).get("next");
  if (!asked) return "/console/overview";
  const url = new URL(asked, location.origin);
  const page = url.pathname.startsWith("/console/") && !/^\/console\/(api|static|login)(\/|$)/.test(url.pathname);
  return url.origin === location.origin && page ? url.pathname + url.search : "/console/overview";
}
