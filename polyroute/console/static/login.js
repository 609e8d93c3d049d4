// The login form: the admin key goes to /console/api/login once; the session comes back as a cookie.
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
      location.assign("/console/overview");
      return;
    }
    error.textContent = doc.error?.message || `Login failed (${answer.status})`;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
});
button.disabled = false;
