/* global window, document, URLSearchParams */
// Shows the refusal message after a failed sign-in (the server redirects with ?failed=1).
if (new URLSearchParams(window.location.search).has('failed')) {
  document.getElementById('login-error').hidden = false;
}
