// The login form: the admin key goes to /console/api/login once; the session comes back as a cookie.
const form = document.getElementById("login");
const error = document.getElementById("login-error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.hidden = true;
  const secret = form.elements.secret.value;
  const answer = await fetch("/console/api/login", {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ secret }),
  });
  form.elements.secret.value = "";
  if (answer.ok) {
    location.assign("/console/overview");
    return;
  }
  const doc = await answer.json().catch(() => ({}));
  error.textContent = doc.error?.message || `Login failed (${answer.status})`;
  error.hidden = false;
});
