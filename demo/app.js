// The sigver demo: peers that join the same room connect over WebRTC, using
// the sigver client (served beside this file as ./client.js) to exchange
// the offer, the answer and the ICE candidates through the server.
//
// Topology: the first peer of a room becomes its member. Every newcomer asks
// for membership (`connect{id, members: []}`), gets `connected: false` and
// is bound by the server to one member (favored ones first, then in the
// order they joined). It sends that member an offer, gets an answer, trades
// ICE candidates, and once its data channel is open asks again with
// `connect{id, members: [thatMember]}`, gets `connected: true` and is a
// member too. Each newcomer thus links to exactly one earlier peer: the
// peers form a tree, and chat messages are flooded along it (each peer
// forwards what it receives to its other channels, once per message id).
//
// Plain JavaScript on purpose: the browser runs this file as it is.

import { describeCloseCode, fetchIceServers, SigverClient } from "./client.js";

const JOIN_TIMEOUT = 15_000;
// TURN credentials expire (an hour by default): fetch fresh ones this often.
const ICE_REFRESH = 60_000;

const params = new URLSearchParams(location.search);
// ?ice=stun:... adds an ICE server by hand (repeatable).
const manualIce = params.getAll("ice").map((urls) => ({ urls }));
// Where the server hands out TURN credentials, if it does: it says so in the
// page, so that a server without them gets no request that fails.
const icePath =
  document.querySelector('meta[name="sigver-ice-servers"]')?.content ?? "";
// ?token=... is an access token, for a server started with --auth-secret.
const token = params.get("token") ?? undefined;
const rtcConfig = {
  iceServers: manualIce,
  // ?relay: connect through TURN only, to try the server's TURN credentials.
  iceTransportPolicy: params.has("relay") ? "relay" : "all",
};
// The signaling server is the one that served this page.
const server = new URL(".", location.href);
const myId = crypto.getRandomValues(new Uint32Array(1))[0] % 0x7fffffff + 1;

/** @type {{client: SigverClient | undefined, transport: "websocket" | "sse" | undefined, room: string, member: boolean, memberVia: number[], upstream: any, peers: Map<string, any>, seen: Set<string>, closed: any}} */
const state = {
  client: undefined,
  transport: undefined,
  room: "",
  member: false,
  memberVia: [],
  upstream: undefined,
  peers: new Map(),
  seen: new Set(),
  closed: undefined,
};
// For tests and curious users: the live objects behind the page.
globalThis.sigverDemo = { state, myId };

const $ = (id) => document.getElementById(id);

function label(groupId) {
  return groupId
    ? `peer ${(groupId & 0xffff).toString(16).padStart(4, "0")}`
    : "peer …";
}

/** Text short enough for a sentence. */
function short(text, max = 48) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function capital(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function log(text) {
  const li = document.createElement("li");
  const time = document.createElement("time");
  time.textContent = new Date().toISOString().slice(11, 23);
  li.append(time, text);
  const list = $("log");
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

function step(name, status, detail) {
  const li = $(`step-${name}`);
  li.dataset.state = status;
  li.querySelector(".detail").textContent = detail;
}

function showBanner(title, detail) {
  const banner = $("banner");
  banner.replaceChildren();
  const strong = document.createElement("strong");
  strong.textContent = title;
  banner.append(strong, detail);
  banner.hidden = false;
}

function system(text) {
  const div = document.createElement("div");
  div.className = "msg system";
  div.textContent = text;
  const box = $("messages");
  box.append(div);
  box.scrollTop = box.scrollHeight;
}

function say(from, text, mine) {
  const div = document.createElement("div");
  div.className = mine ? "msg mine" : "msg";
  const who = document.createElement("span");
  who.className = "from";
  who.textContent = mine ? "you" : label(from);
  div.append(who, text);
  const box = $("messages");
  box.append(div);
  box.scrollTop = box.scrollHeight;
}

// ---- Peer connections ---------------------------------------------------

function badge(text, kind) {
  const span = document.createElement("span");
  span.className = `badge ${kind}`;
  span.textContent = text;
  return span;
}

const GOOD = new Set(["stable", "connected", "completed", "open"]);
const BAD = new Set(["failed", "closed", "disconnected"]);

function stateBadge(value) {
  return badge(
    value,
    GOOD.has(value) ? "ok" : BAD.has(value) ? "bad" : "wait",
  );
}

function render() {
  const body = $("peers");
  body.replaceChildren();
  if (state.peers.size === 0) {
    const tr = document.createElement("tr");
    tr.className = "empty";
    const td = document.createElement("td");
    td.colSpan = 5;
    td.textContent = "No peer connection yet";
    tr.append(td);
    body.append(tr);
  }
  let open = 0;
  for (const peer of state.peers.values()) {
    const { pc, channel } = peer;
    const tr = document.createElement("tr");
    tr.dataset.peer = peer.key;
    const who = document.createElement("td");
    who.append(label(peer.groupId));
    const sub = document.createElement("span");
    sub.className = "sub";
    sub.textContent = peer.role === "upstream"
      ? "you joined it"
      : "it joined you";
    who.append(sub);
    const sig = document.createElement("td");
    sig.append(stateBadge(pc.signalingState));
    const ice = document.createElement("td");
    ice.append(stateBadge(pc.iceConnectionState));
    const iceSub = document.createElement("span");
    iceSub.className = "sub";
    iceSub.textContent =
      `${peer.localCandidates} sent · ${peer.remoteCandidates} received`;
    ice.append(iceSub);
    const conn = document.createElement("td");
    conn.append(stateBadge(pc.connectionState));
    const chan = document.createElement("td");
    chan.append(stateBadge(channel ? channel.readyState : "none"));
    tr.append(who, sig, ice, conn, chan);
    body.append(tr);
    if (channel?.readyState === "open") open++;
  }
  if (state.member) {
    const joined = [...state.peers.values()].filter((p) =>
      p.role === "downstream" && p.channel?.readyState === "open"
    ).length;
    step(
      "member",
      "ok",
      `connected: true · ${
        state.memberVia.length === 0
          ? "first member of the room"
          : `member through ${state.memberVia.map(label).join(", ")}`
      } · ${joined} peer${joined === 1 ? "" : "s"} joined you`,
    );
  }
  if (state.peers.size === 0) {
    step(
      "rtc",
      "idle",
      state.member ? "waiting for a peer to join" : "none yet",
    );
  } else if (open > 0) {
    step(
      "rtc",
      "ok",
      `${open} data channel${open > 1 ? "s" : ""} open: chat is peer to peer`,
    );
  } else {
    step("rtc", "wait", "offer, answer and ICE going through the server");
  }
  $("text").disabled = $("send").disabled = open === 0;
}

function newPeer(role, signalingId) {
  const pc = new RTCPeerConnection(rtcConfig);
  const peer = {
    key: role === "upstream"
      ? `up:${performance.now()}`
      : `down:${signalingId}`,
    role,
    signalingId,
    groupId: 0,
    pc,
    channel: undefined,
    pendingIce: [],
    localCandidates: 0,
    remoteCandidates: 0,
    timer: undefined,
    announced: false,
  };
  state.peers.set(peer.key, peer);
  pc.onicecandidate = (event) => {
    if (!event.candidate) return;
    peer.localCandidates++;
    signal(peer, { type: "candidate", candidate: event.candidate.toJSON() });
    render();
  };
  // A STUN or TURN server that refuses (401: wrong credentials) or does not
  // answer (701) says so here, not in the connection state.
  pc.onicecandidateerror = (event) => {
    log(
      `${
        label(peer.groupId)
      }: ICE server ${event.url}: ${event.errorCode} ${event.errorText}`,
    );
  };
  pc.onsignalingstatechange = render;
  pc.oniceconnectionstatechange = () => {
    log(`${label(peer.groupId)}: ICE ${pc.iceConnectionState}`);
    render();
  };
  pc.onconnectionstatechange = () => {
    log(`${label(peer.groupId)}: connection ${pc.connectionState}`);
    render();
  };
  pc.ondatachannel = (event) => attachChannel(peer, event.channel);
  render();
  return peer;
}

function dropPeer(peer) {
  clearTimeout(peer.timer);
  peer.channel?.close();
  peer.pc.close();
  state.peers.delete(peer.key);
  if (state.upstream === peer) state.upstream = undefined;
  render();
}

function attachChannel(peer, channel) {
  peer.channel = channel;
  channel.onopen = () => {
    clearTimeout(peer.timer);
    log(`${label(peer.groupId)}: data channel open`);
    if (!peer.announced) {
      peer.announced = true;
      system(`${label(peer.groupId)} connected`);
    }
    render();
    if (peer.role === "upstream") void askMembership();
  };
  channel.onclose = () => {
    log(`${label(peer.groupId)}: data channel closed`);
    if (peer.announced) system(`${label(peer.groupId)} left`);
    render();
  };
  channel.onmessage = (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (message.type !== "chat" || state.seen.has(message.id)) return;
    state.seen.add(message.id);
    say(message.from, String(message.text), false);
    flood(message, peer);
  };
  render();
}

function flood(message, except) {
  const text = JSON.stringify(message);
  for (const peer of state.peers.values()) {
    if (peer !== except && peer.channel?.readyState === "open") {
      peer.channel.send(text);
    }
  }
}

// ---- ICE servers --------------------------------------------------------

let iceTimer;

/**
 * Gets TURN credentials from the server's /ice-servers when it hands some
 * out; without them peers connect as before (same machine or LAN, or the
 * ?ice= servers). Returns whether the server hands some out.
 */
async function loadIceServers(first) {
  if (icePath === "") return false;
  let offered;
  try {
    offered = await fetchIceServers(server, { token, path: icePath });
  } catch (error) {
    if (first) log(`no ICE servers from the server: ${error.message}`);
    return false;
  }
  if (offered === undefined) {
    if (first) log("the server hands out no ICE servers (no TURN configured)");
    return false;
  }
  rtcConfig.iceServers = [...offered, ...manualIce];
  if (first) {
    const urls = offered.flatMap((entry) => entry.urls);
    log(`ICE servers from the server: ${urls.join(", ")}`);
  }
  return true;
}

// ---- Signaling ----------------------------------------------------------

function signal(peer, message) {
  const client = state.client;
  if (!client?.open) return;
  // As a joining peer, everything goes to the bound member (recipient 0);
  // as a member, to the joiner's signaling id.
  client.send(
    peer.role === "upstream" ? 0 : peer.signalingId,
    JSON.stringify(message),
  );
}

async function addCandidate(peer, candidate) {
  peer.remoteCandidates++;
  if (!peer.pc.remoteDescription) {
    peer.pendingIce.push(candidate);
    return;
  }
  try {
    await peer.pc.addIceCandidate(candidate);
  } catch (error) {
    log(`${label(peer.groupId)}: bad ICE candidate: ${error.message}`);
  }
  render();
}

async function setRemote(peer, description) {
  await peer.pc.setRemoteDescription(description);
  for (const candidate of peer.pendingIce.splice(0)) {
    await peer.pc.addIceCandidate(candidate).catch(() => {});
  }
}

let asking = false;

async function askMembership() {
  const client = state.client;
  if (!client?.open || asking) return;
  asking = true;
  const members = [...state.peers.values()]
    .filter((p) => p.groupId && p.channel?.readyState === "open")
    .map((p) => p.groupId);
  step(
    "member",
    "wait",
    `connect{id: ${myId}, members: [${members.join(", ")}]} sent`,
  );
  log(`→ connect{id: ${myId}, members: [${members.join(", ")}]}`);
  let connected;
  try {
    connected = await client.connect(myId, members);
  } catch {
    // The socket closed: its close event tells why.
    step("member", "bad", "no reply: the socket closed");
    return;
  } finally {
    asking = false;
  }
  log(`← connected: ${connected}`);
  if (connected) {
    state.member = true;
    state.memberVia = members;
    render();
    return;
  }
  state.member = false;
  step(
    "member",
    "wait",
    "connected: false · bound to a member: sending it an offer",
  );
  await startUpstream();
}

async function startUpstream() {
  if (state.upstream) dropPeer(state.upstream);
  const peer = newPeer("upstream", 0);
  state.upstream = peer;
  attachChannel(peer, peer.pc.createDataChannel("chat"));
  peer.timer = setTimeout(() => {
    if (peer.channel?.readyState === "open" || state.upstream !== peer) return;
    log("no data channel after 15 s: asking the server for another member");
    dropPeer(peer);
    void askMembership();
  }, JOIN_TIMEOUT);
  await peer.pc.setLocalDescription(await peer.pc.createOffer());
  log("→ offer (through the server)");
  signal(peer, {
    type: "offer",
    sdp: peer.pc.localDescription.sdp,
    id: myId,
  });
}

async function onContent(event) {
  let message;
  try {
    message = JSON.parse(event.text());
  } catch {
    log(`ignored a content message that is not JSON`);
    return;
  }
  if (event.senderId === 0) {
    // From the member this peer is bound to.
    const peer = state.upstream;
    if (!peer) return;
    peer.signalingId = event.recipientId;
    if (message.type === "answer") {
      peer.groupId = message.id >>> 0;
      log(`← answer from ${label(peer.groupId)}`);
      await setRemote(peer, { type: "answer", sdp: message.sdp });
    } else if (message.type === "candidate") {
      await addCandidate(peer, message.candidate);
    }
    render();
    return;
  }
  // From a joining peer bound to this member.
  let peer = state.peers.get(`down:${event.senderId}`);
  if (message.type === "offer") {
    if (peer) dropPeer(peer);
    peer = newPeer("downstream", event.senderId);
    peer.groupId = message.id >>> 0;
    log(`← offer from ${label(peer.groupId)} (signaling id ${event.senderId})`);
    await setRemote(peer, { type: "offer", sdp: message.sdp });
    await peer.pc.setLocalDescription(await peer.pc.createAnswer());
    log(`→ answer to ${label(peer.groupId)}`);
    signal(peer, {
      type: "answer",
      sdp: peer.pc.localDescription.sdp,
      id: myId,
    });
  } else if (message.type === "candidate" && peer) {
    await addCandidate(peer, message.candidate);
  }
  render();
}

function onGone(event) {
  if (event.peer === "member") {
    const peer = state.upstream;
    log("← gone: the member this peer was bound to closed its socket");
    if (peer && peer.channel?.readyState !== "open") {
      dropPeer(peer);
      void askMembership();
    }
    return;
  }
  const peer = state.peers.get(`down:${event.signalingId}`);
  log(`← gone: joining peer ${event.signalingId} closed its socket`);
  if (peer && peer.channel?.readyState !== "open") dropPeer(peer);
}

function onClose(event) {
  state.closed = event;
  const what = `${event.code} ${event.codeName}`;
  log(`socket closed: ${what}${event.reason ? ` (${event.reason})` : ""}`);
  step("socket", "bad", `closed: ${what}`);
  const linked = [...state.peers.values()].some((p) =>
    p.channel?.readyState === "open"
  );
  if (event.code !== 1000) {
    showBanner(
      `The server closed the signaling socket: ${what}`,
      `${capital(event.meaning)}.${
        event.reason ? ` Reason: “${event.reason}”.` : ""
      }${
        linked ? " Open data channels keep working; reload to join again." : ""
      }`,
    );
  }
  if (!state.member && !linked) {
    // Refused before anything happened: let the user fix the room name.
    $("who").textContent = "Not connected: the server closed the socket.";
    $("leave").hidden = true;
    $("room").disabled = $("join-button").disabled = false;
  }
}

async function join(room) {
  state.room = room;
  $("room").disabled = $("join-button").disabled = true;
  const url = new URL(location.href);
  url.searchParams.set("room", room);
  history.replaceState(null, "", url);
  step("socket", "wait", "connecting…");
  $("banner").hidden = true;
  if (iceTimer === undefined && await loadIceServers(true)) {
    iceTimer = setInterval(() => void loadIceServers(false), ICE_REFRESH);
  }
  log(`opening the signaling socket of room “${short(room)}”`);
  let client;
  try {
    client = await SigverClient.open(server, room, { token });
  } catch (error) {
    const code = error.code ?? 1006;
    const { name, meaning } = describeCloseCode(code);
    step("socket", "bad", `refused: ${code} ${name}`);
    log(`socket refused: ${code} ${name}`);
    showBanner(
      `The server refused the signaling socket: ${code} ${name}`,
      `${capital(meaning)}.`,
    );
    $("room").disabled = $("join-button").disabled = false;
    return;
  }
  state.client = client;
  client.addEventListener("close", onClose);
  client.addEventListener("content", (event) => void onContent(event));
  client.addEventListener("gone", onGone);
  // The token is a credential: keep it off the screen.
  const shown = client.url.replace(/\/t\/[^/]+\//, "/t/…/");
  // Where a WebSocket can't open, the client fell back to Server-Sent
  // Events down and POSTs up: its URL is then http(s).
  state.transport = /^https?:/.test(client.url) ? "sse" : "websocket";
  $("step-socket").dataset.transport = state.transport;
  const over = state.transport === "sse"
    ? "the fallback (Server-Sent Events + POST)"
    : "WebSocket";
  step("socket", "ok", `open over ${over} · ${short(shown, 72)}`);
  log(`socket open over ${over}: ${short(shown, 120)}`);
  $("leave").hidden = false;
  const link = new URL(location.href);
  $("who").replaceChildren(
    `You are ${label(myId)} (group id ${myId}) in room “${short(room)}”. `,
    Object.assign(document.createElement("a"), {
      href: link.href,
      target: "_blank",
      textContent: "Open this room in another tab",
    }),
  );
  await askMembership();
}

$("join").addEventListener("submit", (event) => {
  event.preventDefault();
  const room = $("room").value.trim();
  if (room) void join(room);
});

$("leave").addEventListener("click", () => {
  location.href = location.pathname;
});

$("chat").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  const message = {
    type: "chat",
    // randomUUID() needs a secure context; plain http on a LAN is not one.
    id: [...crypto.getRandomValues(new Uint32Array(4))].join("-"),
    from: myId,
    text,
  };
  state.seen.add(message.id);
  say(myId, text, true);
  flood(message, undefined);
  $("text").value = "";
});

const initial = params.get("room");
if (initial) {
  $("room").value = initial;
  void join(initial);
} else {
  $("room").value = `room-${
    crypto.getRandomValues(new Uint16Array(1))[0].toString(36)
  }`;
}
