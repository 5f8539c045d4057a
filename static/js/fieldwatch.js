// Behaviour shared by every page. No inline scripts: the Content-Security-Policy forbids them.

// A form with data-confirm asks before it submits (removing a member, suspending a tenant...).
document.addEventListener("submit", (event) => {
  const message = event.target.dataset && event.target.dataset.confirm;
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
}, true);
