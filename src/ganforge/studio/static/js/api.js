// Talking to the studio's API: every failure shows the server's own message in the error banner.

export class ApiError extends Error {
  constructor(status, detail, fields) {
    super(detail);
    this.status = status;
    this.fields = fields || [];
  }
}

async function failure(resp) {
  let detail = `${resp.status} ${resp.statusText}`;
  let fields = [];
  try {
    const body = await resp.json();
    if (typeof body.detail === "string") detail = body.detail;
    else if (Array.isArray(body.detail)) {  // FastAPI's own validation errors
      detail = body.detail.map((e) => `${e.loc.slice(1).join(".")}: ${e.msg}`).join("\n");
      fields = body.detail.map((e) => e.loc.slice(1).join("."));
    }
    if (Array.isArray(body.fields)) fields = body.fields;
  } catch { /* not JSON: keep the status line */ }
  if (resp.status === 401) window.dispatchEvent(new CustomEvent("studio:login"));
  return new ApiError(resp.status, detail, fields);
}

/** JSON request; resolves to the parsed body (or null for 204), rejects with ApiError. */
export async function api(path, { method = "GET", body, form } = {}) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (form) init.body = form;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(path, init);
  if (!resp.ok) throw await failure(resp);
  if (resp.status === 204) return null;
  return resp.json();
}

/** A request that answers with an image: resolves to {url, headers} (an object URL for an <img>). */
export async function apiImage(path, { body, form } = {}) {
  const init = { method: "POST", headers: {}, credentials: "same-origin" };
  if (form) init.body = form;
  else { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  const resp = await fetch(path, init);
  if (!resp.ok) throw await failure(resp);
  return { url: URL.createObjectURL(await resp.blob()), headers: resp.headers };
}

/** GET a file (an image): resolves to its Blob, rejects with ApiError carrying the server's message. */
export async function apiBlob(path) {
  const resp = await fetch(path, { credentials: "same-origin" });
  if (!resp.ok) throw await failure(resp);
  return resp.blob();
}

/** Multipart upload with progress (fetch cannot report upload progress). */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, "the upload was interrupted (network error or the server closed " +
                                               "the connection: is the file over the upload limit?)"));
    xhr.onload = async () => {
      const resp = new Response(xhr.responseText, { status: xhr.status, statusText: xhr.statusText });
      if (xhr.status >= 200 && xhr.status < 300) resolve(JSON.parse(xhr.responseText));
      else reject(await failure(resp));
    };
    xhr.send(form);
  });
}

export function showError(err) {
  const box = document.getElementById("error");
  document.getElementById("error-text").textContent = err instanceof Error ? err.message : String(err);
  box.hidden = false;
}

export function clearError() {
  document.getElementById("error").hidden = true;
}

/** Run an async action with the button disabled and errors shown. */
export async function busy(button, action) {
  if (button) button.disabled = true;
  clearError();
  try {
    return await action();
  } catch (err) {
    showError(err);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

export const fmt = (x, digits = 3) => (x === null || x === undefined ? "—" :
  typeof x === "number" ? Number(x.toPrecision(digits)).toString() : String(x));
