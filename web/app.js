// Storefront demo: the home feed, product pages with similar / also-viewed products, and search,
// all from the service's public API. Every click and search is posted as a real event, and the
// feed is read again afterwards, so it visibly adapts.
"use strict";

const USER_KEY = "demo_user";        // a shopper id typed in by the visitor
const VISITOR_KEY = "demo_visitor";  // the anonymous visitor's generated id
const FEED_SIZE = 12;
const $ = (id) => document.getElementById(id);
const seenItems = new Map();  // product id -> the last item body the API returned for it

function visitorId() {
  let id = localStorage.getItem(VISITOR_KEY);
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(6));
    id = "visitor_" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    localStorage.setItem(VISITOR_KEY, id);
  }
  return id;
}

function currentUser() {
  return localStorage.getItem(USER_KEY) || visitorId();
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

// fetch + JSON; a problem+json answer becomes an Error carrying its detail.
async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = body && (body.detail || body.title);
    throw new Error(`${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return body;
}

function postEvent(event) {
  return api("/interactions", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({user_id: currentUser(), ...event}),
  });
}

const rupees = (value) => value == null ? "" : "₹" + Math.round(value).toLocaleString("en-IN");

function placeholder(item) {
  const box = document.createElement("div");
  box.className = "placeholder";
  box.textContent = (item.sub_category || item.main_category || "?").slice(0, 24);
  return box;
}

function image(item) {
  if (!item.image) return placeholder(item);
  const img = document.createElement("img");
  img.src = item.image;
  img.alt = "";
  img.loading = "lazy";
  img.onerror = () => img.replaceWith(placeholder(item));  // no network, or a dead link
  return img;
}

function card(item) {
  seenItems.set(item.id, item);
  const element = document.createElement("article");
  element.className = "card";
  element.dataset.productId = item.id;
  element.tabIndex = 0;
  element.append(image(item));
  const name = document.createElement("h3");
  name.textContent = item.name;
  element.append(name);
  const price = document.createElement("p");
  price.className = "price";
  price.textContent = rupees(item.discount_price ?? item.actual_price);
  if (item.discount_ratio > 0 && item.actual_price) {
    const was = document.createElement("s");
    was.textContent = rupees(item.actual_price);
    const off = document.createElement("span");
    off.className = "discount";
    off.textContent = `${Math.round(item.discount_ratio * 100)}% off`;
    price.append(" ", was, " ", off);
  }
  element.append(price);
  if (item.ratings != null) {
    const rating = document.createElement("p");
    rating.className = "rating";
    rating.textContent = `★ ${item.ratings} (${(item.no_of_ratings || 0).toLocaleString("en-IN")})`;
    element.append(rating);
  }
  const reasons = document.createElement("ul");
  reasons.className = "reasons";
  for (const reason of item.reasons || []) {
    const line = document.createElement("li");
    line.textContent = reason.text;
    line.dataset.signal = reason.signal;
    reasons.append(line);
  }
  element.append(reasons);
  const open = () => openProduct(item.id);
  element.addEventListener("click", open);
  element.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
  return element;
}

function fill(container, items, empty = "Nothing to show.") {
  container.replaceChildren(...items.map(card));
  if (!items.length) {
    const note = document.createElement("p");
    note.className = "muted";
    note.textContent = empty;
    container.append(note);
  }
}

async function loadHome() {
  const params = new URLSearchParams({user_id: currentUser(), limit: FEED_SIZE});
  const feed = await api(`/recommendations/home?${params}`);
  $("home-strategy").textContent = `(${feed.strategy}${feed.degraded ? ", degraded" : ""})`;
  fill($("home"), feed.items);
  $("home").dataset.version = String(Date.now());  // tells a watcher the feed was read again
  return feed;
}

async function openProduct(productId) {
  showError("");
  try {
    await postEvent({event_type: "product_click", product_id: productId});
    const similar = api(`/recommendations/product/${encodeURIComponent(productId)}?limit=6`);
    const also = api(`/recommendations/product/${encodeURIComponent(productId)}?limit=6&mode=also_viewed`);
    const item = seenItems.get(productId);
    const detail = $("product-detail");
    detail.replaceChildren();
    if (item) {
      const title = document.createElement("h2");
      title.textContent = item.name;
      const facts = document.createElement("p");
      facts.textContent = `${item.main_category} › ${item.sub_category} · ${rupees(item.discount_price ?? item.actual_price)}`;
      detail.append(image(item), title, facts);
      if (item.link) {
        const link = document.createElement("a");
        link.href = item.link;
        link.textContent = "on the shop's site";
        link.rel = "noopener";
        detail.append(link);
      }
    }
    detail.dataset.productId = productId;
    fill($("similar"), (await similar).items);
    fill($("also-viewed"), (await also).items, "No co-views recorded for this product yet.");
    $("product-view").hidden = false;
    $("search-view").hidden = true;
    window.scrollTo(0, 0);
    await loadHome();
  } catch (error) {
    showError(error.message);
  }
}

async function search(text) {
  showError("");
  try {
    await postEvent({event_type: "search_query", query: text});
    const params = new URLSearchParams({q: text, user_id: currentUser(), limit: FEED_SIZE});
    const result = await api(`/recommendations/search?${params}`);
    $("search-query").textContent = text;
    const expansions = result.expansions
      .filter((e) => e.expanded_to.length > 1)
      .map((e) => `${e.term} → ${e.expanded_to.join(", ")}`);
    const corrected = (result.corrections || [])
      .map((c) => `${c.corrected_to} (you typed ${c.term})`);
    $("search-expansions").textContent = [
      corrected.length ? `Searched for ${corrected.join(", ")}.` : "",
      expansions.length ? `Also searched: ${expansions.join("; ")}` : "",
    ].filter(Boolean).join(" ");
    const fallback = $("search-fallback");
    fallback.hidden = !result.fallback_reason;
    fallback.textContent = result.fallback_reason
      ? `No product matched; showing instead (${result.fallback_reason}).` : "";
    fill($("search-results"), result.items);
    $("search-view").hidden = false;
    $("product-view").hidden = true;
    await loadHome();
  } catch (error) {
    showError(error.message);
  }
}

function showUser() {
  const typed = localStorage.getItem(USER_KEY);
  $("who").textContent = typed
    ? `Shopping as ${typed}.`
    : `Shopping anonymously (visitor id ${visitorId()}).`;
  $("user-input").value = typed || "";
}

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("search-input").value.trim();
  if (text) search(text);
});

$("user-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const typed = $("user-input").value.trim();
  if (typed && !$("user-input").checkValidity()) {
    showError("A shopper id has letters, digits and _ only (at most 50).");
    return;
  }
  if (typed) localStorage.setItem(USER_KEY, typed); else localStorage.removeItem(USER_KEY);
  showUser();
  loadHome().catch((error) => showError(error.message));
});

$("anonymous-button").addEventListener("click", () => {
  localStorage.removeItem(USER_KEY);
  showUser();
  loadHome().catch((error) => showError(error.message));
});

$("close-product").addEventListener("click", () => { $("product-view").hidden = true; });

showUser();
loadHome().catch((error) => showError(error.message));
