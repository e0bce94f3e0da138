/**
 * The chat's web page: HTML and CSS. Its script is `src/browser.ts`, served at `/chat.js`.
 * @module
 */

/** The page served at `/`. */
export const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Handshake chat</title>
<style>
  :root { font-family: system-ui, sans-serif; color-scheme: light dark; }
  body { max-width: 42rem; margin: 0 auto; padding: 1rem; display: grid; gap: 0.75rem; }
  header { display: flex; align-items: baseline; justify-content: space-between; gap: 1rem; }
  h1 { font-size: 1.25rem; margin: 0; }
  #status { font-size: 0.875rem; padding: 0.125rem 0.5rem; border-radius: 1rem; background: #8884; }
  #status[data-state="open"] { background: #2a84; }
  #status[data-state="connecting"], #status[data-state="reconnecting"] { background: #fa04; }
  #status[data-state="closed"] { background: #e334; }
  form { display: flex; gap: 0.5rem; }
  input { flex: 1; font: inherit; padding: 0.25rem 0.5rem; }
  #members { font-size: 0.875rem; opacity: 0.8; min-height: 1.25em; margin: 0; }
  #rooms { display: flex; flex-wrap: wrap; gap: 0.5rem; margin: 0; padding: 0; list-style: none; }
  #log { list-style: none; margin: 0; padding: 0.5rem; height: 50vh; overflow-y: auto;
         border: 1px solid #8886; border-radius: 0.25rem; }
  #log li { padding: 0.125rem 0; overflow-wrap: anywhere; }
  #log .notice, #log .system { font-style: italic; opacity: 0.7; }
  #log .system { color: #c33; }
</style>
</head>
<body>
<header>
  <h1>Handshake chat</h1>
  <output id="status" data-state="idle">not connected</output>
</header>
<form id="join">
  <input name="name" placeholder="Your name" required autocomplete="nickname">
  <input name="room" placeholder="Room" value="lobby" required pattern="[A-Za-z0-9_\\-]{1,32}">
  <button>Join</button>
</form>
<ul id="rooms" aria-label="Rooms"></ul>
<p id="members"></p>
<ol id="log" aria-live="polite"></ol>
<form id="say">
  <input name="text" placeholder="Say something" autocomplete="off" disabled>
  <button disabled>Send</button>
</form>
<script type="module" src="/chat.js"></script>
</body>
</html>
`
