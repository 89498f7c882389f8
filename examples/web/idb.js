// A tiny IndexedDB key-value helper for the demo (database "haven-demo", store "kv").
function open() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open("haven-demo", 1);
    req.onupgradeneeded = () => req.result.createObjectStore("kv");
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function tx(mode, fn) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const t = db.transaction("kv", mode);
    const req = fn(t.objectStore("kv"));
    t.oncomplete = () => { db.close(); resolve(req?.result); };
    t.onerror = () => { db.close(); reject(t.error); };
  });
}

export const idbGet = (key) => tx("readonly", (s) => s.get(key));
export const idbPut = (key, value) => tx("readwrite", (s) => s.put(value, key));
export const idbDelete = (key) => tx("readwrite", (s) => s.delete(key));
