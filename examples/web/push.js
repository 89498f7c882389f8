// Web Push for the demo pages (PROTOCOL §18, §13.4.2; docs/BINDINGS_WEB.md, "Push").
//
// `enablePush` registers the service worker (sw.js), subscribes this browser with the relay's
// VAPID key (`pushManager.subscribe({userVisibleOnly: true, applicationServerKey})`) and
// registers the subscription for this device through the SDK. `onWake` hands every wake-up the
// worker passes on to the messenger, which fetches, processes and acknowledges what waits and
// resolves to a summary the page shows itself (the relay learns nothing of it).
import { base64UrlToBytes } from "/js/haven-client.js";

/** Whether this browser can do Web Push at all. */
export function pushSupported() {
  return "serviceWorker" in navigator && "PushManager" in self;
}

/**
 * Registers the worker, subscribes (reusing this browser's subscription when it has one) and
 * registers the subscription with the relay; resolves to `{id, subscription, registration}`.
 */
export async function enablePush(client, { swUrl = "/sw.js" } = {}) {
  if (!pushSupported()) throw new Error("this browser has no Web Push");
  await navigator.serviceWorker.register(swUrl);
  const registration = await navigator.serviceWorker.ready;
  let subscription = await registration.pushManager.getSubscription();
  if (!subscription) {
    const applicationServerKey = base64UrlToBytes(await client.pushVapidKey());
    subscription = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey });
  }
  const id = await client.registerWebPush(subscription);
  return { id, subscription, registration };
}

/**
 * Calls `messenger.handleWakeUp()` for each wake-up the worker passes on, then
 * `show(summary)` (or `show(null, error)`); re-registers a subscription the browser replaced.
 * Returns the function that stops listening.
 */
export function onWake(client, messenger, show) {
  const listener = async (ev) => {
    try {
      if (ev.data?.type === "haven-wake") show(await messenger.handleWakeUp());
      else if (ev.data?.type === "haven-resubscribe") await enablePush(client);
    } catch (e) {
      show(null, e);
    }
  };
  navigator.serviceWorker.addEventListener("message", listener);
  return () => navigator.serviceWorker.removeEventListener("message", listener);
}

/** The line the page shows for a wake-up's summary. */
export function describeWake(summary) {
  const n = summary.messages;
  const c = summary.conversations.length;
  const more = summary.complete ? "" : " (more waiting)";
  return n === 0 ? `wake-up: nothing new${more}`
    : `wake-up: ${n} new message${n === 1 ? "" : "s"} in ${c} conversation${c === 1 ? "" : "s"}${more}`;
}
