// The demo's service worker: receives Web Push wake-ups (PROTOCOL §18, §13.4.2).
//
// A wake-up carries nothing but {"type":"wake"}, encrypted for this browser (RFC 8291; the
// browser decrypts it before this worker sees it): the relay knows nothing more to say. The
// SDK's state lives with the page (IndexedDB, sealed under a key only the tab holds), so this
// worker cannot fetch mail itself. It wakes every open page of the demo, whose messenger then
// fetches, processes and acknowledges what waits (HavenMessenger.handleWakeUp) and shows what it
// found locally; when no page is visible it also shows a generic notification, "New message",
// with no content (Chromium requires a visible notification for each push, `userVisibleOnly`).
// Clicking it opens the chat page, which catches up as it connects.

const NOTIFICATION_TAG = "haven-wake";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => event.waitUntil(wake()));

/** Wakes the open pages; without a visible one, shows the generic notification. */
async function wake() {
  // Whatever the payload says, a push only ever means "something may be waiting": nothing in
  // it is trusted or shown.
  const pages = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  for (const page of pages) page.postMessage({ type: "haven-wake" });
  if (!pages.some((page) => page.visibilityState === "visible")) {
    await self.registration.showNotification("Haven", {
      body: "New message",
      tag: NOTIFICATION_TAG,
      renotify: false,
    });
  }
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil((async () => {
    const pages = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const page = pages.find((p) => "focus" in p);
    if (page) await page.focus();
    else await self.clients.openWindow("/");
  })());
});

// The browser replaced the subscription (expiry, key rotation): the open pages register the new
// one through the SDK (the worker holds no session to do it with).
self.addEventListener("pushsubscriptionchange", (event) => {
  event.waitUntil((async () => {
    const pages = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    for (const page of pages) page.postMessage({ type: "haven-resubscribe" });
  })());
});
