// Two matrix-js-sdk clients (the SDK behind Element Web/Desktop) driven against a homeserver.
//
// Usage: node scenario.mjs <homeserver base URL>   (environment: SCENARIO_TIMEOUT_MS, default 100000)
//
// Prints exactly one JSON object on stdout: {"ok": true|false, "results": {...}, "error": "..."}.
// "results" holds the values the SDK itself computed (timeline bodies, edited content, thread length, unread
// counts...) so the Python test asserts on what Element would show, not on raw HTTP replies. Every wait is
// bounded; the whole run is cut off after SCENARIO_TIMEOUT_MS with whatever was gathered so far.

import {
    ClientEvent,
    createClient,
    EventType,
    NotificationCountType,
    PendingEventOrdering,
    ReceiptType,
    RelationType,
    SyncState,
    THREAD_RELATION_TYPE,
    threadIdForReceipt,
} from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const baseUrl = process.argv[2];
const overallMs = Number(process.env.SCENARIO_TIMEOUT_MS || 100000);
const results = {};
const clients = [];

// stdout carries only the result line: the SDK and the crypto WASM's tracing write through console.log/debug.
console.log = console.info = console.debug = console.error;
// The SDK logs every request at debug level; stderr keeps only warnings so a failure's output stays readable.
logger.setLevel(process.env.SCENARIO_DEBUG ? "debug" : "warn");

function finish(ok, error) {
    for (const c of clients) {
        try {
            c.stopClient();
        } catch {
            // The client may not have started; stopping is best effort on the way out.
        }
    }
    process.stdout.write(JSON.stringify({ ok, results, error: error ? String(error.stack || error) : null }) + "\n");
    process.exit(ok ? 0 : 1);
}

setTimeout(() => finish(false, new Error(`scenario did not finish within ${overallMs} ms`)), overallMs).unref();

/** Poll `check` every 50 ms until it returns a truthy value; throw after `ms` naming `what`. */
async function waitFor(what, check, ms = 15000) {
    const deadline = Date.now() + ms;
    for (;;) {
        const value = await check();
        if (value) return value;
        if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for: ${what}`);
        await new Promise((r) => setTimeout(r, 50));
    }
}

/** Register with m.login.dummy (answering the 401 user-interactive challenge as Element does), then log in. */
async function registerAndLogin(localpart, password) {
    const anon = createClient({ baseUrl });
    let session;
    try {
        await anon.registerRequest({ username: localpart, password, inhibit_login: true });
        throw new Error("registration without auth unexpectedly succeeded");
    } catch (e) {
        if (e.httpStatus !== 401 || !e.data?.session) throw e;
        const flows = e.data.flows.map((f) => f.stages.join(","));
        if (!flows.includes("m.login.dummy")) throw new Error(`no m.login.dummy flow: ${JSON.stringify(flows)}`);
        session = e.data.session;
    }
    const reg = await anon.registerRequest({
        username: localpart,
        password,
        inhibit_login: true,
        auth: { type: "m.login.dummy", session },
    });
    const login = await anon.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: localpart },
        password,
        initial_device_display_name: `js-sdk ${localpart}`,
    });
    if (login.user_id !== reg.user_id) throw new Error(`login user ${login.user_id} != registered ${reg.user_id}`);
    const client = createClient({
        baseUrl,
        userId: login.user_id,
        accessToken: login.access_token,
        deviceId: login.device_id,
    });
    client.tocsinLogin = { localpart, password, accessToken: login.access_token, deviceId: login.device_id };
    clients.push(client);
    return client;
}

/** Answer a user-interactive auth challenge with the password, as Element's dialog does. */
async function withPasswordUia(client, makeRequest) {
    try {
        await makeRequest(null);
    } catch (e) {
        if (e.httpStatus !== 401 || !e.data?.session) throw e;
        const flows = e.data.flows.map((f) => f.stages.join(","));
        if (!flows.includes("m.login.password")) throw new Error(`no m.login.password flow: ${JSON.stringify(flows)}`);
        const { localpart, password } = client.tocsinLogin;
        await makeRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user: localpart },
            password,
            session: e.data.session,
        });
    }
}

/** startClient as Element does (lazy-loaded members, threads) and wait for the PREPARED sync state. */
async function start(client, initialSyncLimit = 20) {
    const prepared = new Promise((resolve, reject) => {
        const onSync = (state, _prev, data) => {
            if (state === SyncState.Prepared) {
                client.off(ClientEvent.Sync, onSync);
                resolve();
            } else if (state === SyncState.Error) {
                reject(new Error(`sync error: ${data?.error?.message || data?.error}`));
            }
        };
        client.on(ClientEvent.Sync, onSync);
    });
    // As Element: local echoes wait outside the timeline until the server's echo places them, so the timeline
    // order is the server's order.
    await client.startClient({
        lazyLoadMembers: true,
        threadSupport: true,
        initialSyncLimit,
        pendingEventOrdering: PendingEventOrdering.Detached,
    });
    await Promise.race([
        prepared,
        new Promise((_, reject) => setTimeout(() => reject(new Error("no PREPARED within 20 s")), 20000)),
    ]);
}

const timelineBodies = (room) =>
    room
        .getLiveTimeline()
        .getEvents()
        .filter((e) => e.getType() === EventType.RoomMessage)
        .map((e) => e.getContent().body);

async function plainScenario(alice, bob) {
    const r = {};
    r.versions = (await alice.getVersions()).versions;
    r.threads_supported = alice.supportsThreads();
    const caps = await alice.getCapabilities();
    r.capabilities = Object.keys(caps).sort();
    r.pushrules_loaded = Boolean(alice.pushRules?.global?.override?.length);

    const { room_id: roomId } = await alice.createRoom({ name: "js-sdk incident", preset: "private_chat" });
    r.room_id = roomId;
    const aliceRoom = await waitFor("alice sees the room", () => alice.getRoom(roomId));
    await alice.invite(roomId, bob.getUserId());
    await waitFor("bob sees the invite", () => bob.getRoom(roomId)?.getMyMembership() === "invite");
    r.bob_invite_name = bob.getRoom(roomId).name;
    await bob.joinRoom(roomId);
    const bobRoom = await waitFor("bob joined", () => {
        const room = bob.getRoom(roomId);
        return room?.getMyMembership() === "join" ? room : null;
    });
    await waitFor("alice sees bob joined", () => aliceRoom.getMember(bob.getUserId())?.membership === "join");
    r.alice_room_members = aliceRoom.getJoinedMembers().map((m) => m.userId).sort();

    // Messages both ways; each side's SDK timeline must show them in order.
    const first = await alice.sendTextMessage(roomId, "disk full on db-1");
    await bob.sendTextMessage(roomId, "on it");
    await waitFor("bob's timeline has both", () => timelineBodies(bobRoom).includes("on it") &&
        timelineBodies(bobRoom).includes("disk full on db-1"));
    await waitFor("alice's timeline has both", () => timelineBodies(aliceRoom).includes("on it"));
    r.bob_timeline = timelineBodies(bobRoom);
    r.alice_timeline = timelineBodies(aliceRoom);

    // Unread count: bob's SDK counts alice's messages until bob sends a read receipt.
    const unreadBefore = bobRoom.getUnreadNotificationCount(NotificationCountType.Total);
    const alert = await alice.sendTextMessage(roomId, "CPU 98% on web-3");
    await waitFor("bob's unread count rises", () =>
        bobRoom.getUnreadNotificationCount(NotificationCountType.Total) > unreadBefore);
    r.unread_after_message = bobRoom.getUnreadNotificationCount(NotificationCountType.Total);
    const alertEvent = await waitFor("bob has the alert event", () => bobRoom.findEventById(alert.event_id));
    await bob.sendReadReceipt(alertEvent, ReceiptType.Read);
    await waitFor("bob's unread count back to 0", () =>
        bobRoom.getUnreadNotificationCount(NotificationCountType.Total) === 0);
    r.unread_after_receipt = bobRoom.getUnreadNotificationCount(NotificationCountType.Total);
    await waitFor("alice sees bob's read receipt", () =>
        aliceRoom.getEventReadUpTo(bob.getUserId()) === alert.event_id);
    r.alice_sees_bob_read_up_to = aliceRoom.getEventReadUpTo(bob.getUserId());
    r.alert_event_id = alert.event_id;

    // Typing notifications arrive as member state in the other SDK. The timeout is Element's (30 s): with 10 s,
    // the server could expire the typing before alice's /sync (slow on a loaded machine) has shown it.
    await bob.sendTyping(roomId, true, 30000);
    await waitFor("alice sees bob typing", () => aliceRoom.getMember(bob.getUserId())?.typing === true);
    r.alice_sees_bob_typing = true;
    await bob.sendTyping(roomId, false);
    await waitFor("alice sees bob stop typing", () => aliceRoom.getMember(bob.getUserId())?.typing === false);
    r.alice_sees_bob_stopped_typing = true;

    // Edit (m.replace): the SDK shows the replacement content on the original event.
    await alice.sendEvent(roomId, EventType.RoomMessage, {
        "msgtype": "m.text",
        "body": "* disk full on db-1 (90 GB)",
        "m.new_content": { msgtype: "m.text", body: "disk full on db-1 (90 GB)" },
        "m.relates_to": { rel_type: RelationType.Replace, event_id: first.event_id },
    });
    const bobFirst = bobRoom.findEventById(first.event_id);
    await waitFor("bob sees the edit", () => bobFirst.replacingEventId());
    r.edited_body_bob_sees = bobFirst.getContent().body;
    r.edit_original_body = bobFirst.getOriginalContent().body;

    // Reaction (m.annotation): aggregated by the SDK's relations container.
    await bob.sendEvent(roomId, EventType.Reaction, {
        "m.relates_to": { rel_type: RelationType.Annotation, event_id: first.event_id, key: "👀" },
    });
    const reactions = await waitFor("alice sees the reaction", () => {
        const rel = aliceRoom.relations.getChildEventsForEvent(first.event_id, RelationType.Annotation,
            EventType.Reaction);
        return rel && rel.getSortedAnnotationsByKey()?.length ? rel : null;
    });
    r.reactions_alice_sees = reactions.getSortedAnnotationsByKey().map(([key, events]) => [key, events.size]);

    // Thread: a reply with rel_type m.thread becomes a Thread object on the other side.
    const reply = await bob.sendEvent(roomId, alert.event_id, EventType.RoomMessage, {
        "msgtype": "m.text",
        "body": "restarted the service",
        "m.relates_to": {
            "rel_type": THREAD_RELATION_TYPE.name,
            "event_id": alert.event_id,
            "is_falling_back": true,
            "m.in_reply_to": { event_id: alert.event_id },
        },
    });
    const thread = await waitFor("alice has the thread", () => {
        const t = aliceRoom.getThread(alert.event_id);
        return t && t.length >= 1 && t.replyToEvent?.getId() === reply.event_id ? t : null;
    });
    r.thread = {
        root: thread.id,
        length: thread.length,
        reply_body: thread.replyToEvent.getContent().body,
        root_body: thread.rootEvent?.getContent().body,
        in_main_timeline: timelineBodies(aliceRoom).includes("restarted the service"),
    };
    // The sender's SDK only files its own reply into a Thread it already knows (Element opens the thread panel
    // first), so alice answers in the thread she now has; bob's SDK builds its Thread from the synced reply
    // and fills it from /relations.
    const answer = await alice.sendEvent(roomId, alert.event_id, EventType.RoomMessage, {
        msgtype: "m.text",
        body: "confirmed, load is back to normal",
    });
    const bobThread = await waitFor("bob has the thread with both replies", () => {
        const t = bobRoom.getThread(alert.event_id);
        // replyToEvent may come from the root's bundled aggregation before /relations fills the timeline.
        // The SDK fetches the root (with its aggregation) on its own schedule: wait for it too, as Element's
        // thread panel does before it renders.
        return t && t.length === 2 && t.timeline.some((e) => e.getId() === answer.event_id)
            && t.rootEvent && t.timeline[0]?.getId() === alert.event_id
            && t.rootEvent.getServerAggregatedRelation(THREAD_RELATION_TYPE.name) ? t : null;
    });
    r.bob_thread = {
        length: bobThread.length,
        bodies: bobThread.timeline.map((e) => e.getContent().body),
        root_count_in_aggregation: bobThread.rootEvent?.getServerAggregatedRelation(THREAD_RELATION_TYPE.name)?.count,
    };
    // Alice's SDK files her own answer into her thread when her /sync brings its remote echo back. (The SDK's
    // running reply count, thread.length, is not checked here: her send makes the SDK re-fetch the root, and
    // when that answer, read just before her message was stored, lands after the echo, the SDK keeps the
    // older count until the thread next changes: a client-side race that no server order can prevent.)
    // Her Thread was created (and alice answered) as soon as bob's reply arrived, before the SDK loaded it from
    // the server: it then empties the thread's timeline and refills it from /relations. An echo landing while
    // that request is out sits alone in the emptied timeline, so wait for the load as well
    // (initialEventsFetched, what Element's thread panel waits for).
    const aliceThread = await waitFor("alice's thread is loaded and has her answer", () => {
        const t = aliceRoom.getThread(alert.event_id);
        return t && t.initialEventsFetched && t.timeline.some((e) => e.getId() === answer.event_id) ? t : null;
    });
    r.alice_thread_bodies = aliceThread.timeline.filter((e) => e.getId() !== alert.event_id)
        .map((e) => e.getContent().body);
    // The summary Element shows comes from the root's bundled m.thread aggregation: what the server tells alice.
    const aliceRoot = await alice.fetchRoomEvent(roomId, alert.event_id);
    const summary = aliceRoot.unsigned?.["m.relations"]?.[THREAD_RELATION_TYPE.name];
    r.alice_root_thread_summary = summary && {
        count: summary.count,
        current_user_participated: summary.current_user_participated,
        latest_event_id: summary.latest_event?.event_id,
    };
    // Threaded read receipt: the SDK adds thread_id for an event that lives in a thread.
    const bobAnswer = bobThread.findEventById(answer.event_id);
    r.receipt_thread_id_sent = threadIdForReceipt(bobAnswer);
    // Per-thread unread counts (unread_thread_notifications in the SDK's filter): alice's answer counts in
    // the thread until bob's threaded receipt.
    await waitFor("bob's thread unread count rises", () =>
        bobRoom.getThreadUnreadNotificationCount(alert.event_id, NotificationCountType.Total) > 0);
    r.bob_thread_unread_before_receipt = bobRoom.getThreadUnreadNotificationCount(alert.event_id,
        NotificationCountType.Total);
    await bob.sendReadReceipt(bobAnswer, ReceiptType.Read);
    await waitFor("bob's thread unread count back to 0", () =>
        bobRoom.getThreadUnreadNotificationCount(alert.event_id, NotificationCountType.Total) === 0);
    r.bob_thread_unread_after_receipt = bobRoom.getThreadUnreadNotificationCount(alert.event_id,
        NotificationCountType.Total);
    await waitFor("alice sees bob's threaded receipt", () =>
        aliceRoom.getThread(alert.event_id)?.getEventReadUpTo(bob.getUserId()) === answer.event_id);
    r.thread_receipt_alice_sees = aliceRoom.getThread(alert.event_id).getEventReadUpTo(bob.getUserId());
    r.thread_answer_id = answer.event_id;

    // Display name: the room member name follows the profile change.
    await bob.setDisplayName("Bob (on call)");
    await waitFor("alice sees bob's new name", () => aliceRoom.getMember(bob.getUserId())?.name === "Bob (on call)");
    r.bob_member_name_alice_sees = aliceRoom.getMember(bob.getUserId()).name;

    // Media: upload through the SDK, download via the authenticated and the legacy URL the SDK builds.
    const payload = Buffer.from("stack trace line 1\nline 2\n", "utf8");
    const upload = await alice.uploadContent(payload, { name: "trace.txt", type: "text/plain" });
    r.content_uri = upload.content_uri;
    const authUrl = bob.mxcUrlToHttp(upload.content_uri, undefined, undefined, undefined, false, true, true);
    const authResp = await fetch(authUrl, { headers: { Authorization: `Bearer ${bob.getAccessToken()}` } });
    r.download_auth = { status: authResp.status, body: await authResp.text(),
        content_type: authResp.headers.get("content-type") };
    const legacyUrl = bob.mxcUrlToHttp(upload.content_uri);
    const legacyResp = await fetch(legacyUrl);
    r.download_legacy = { status: legacyResp.status, body: await legacyResp.text() };

    // Redaction: the other SDK strips the content and marks the event redacted with the reason.
    const wrong = await alice.sendTextMessage(roomId, "wrong room, ignore");
    const bobWrong = await waitFor("bob has the message to redact", () => bobRoom.findEventById(wrong.event_id));
    await alice.redactEvent(roomId, wrong.event_id, undefined, { reason: "posted by mistake" });
    await waitFor("bob sees it redacted", () => bobWrong.isRedacted());
    r.redacted = {
        content: bobWrong.getContent(),
        reason: bobWrong.getUnsigned().redacted_because?.content?.reason,
        in_timeline: bobRoom.getLiveTimeline().getEvents().some((e) => e.getId() === wrong.event_id),
    };

    // Leave: bob's SDK moves the room to "leave", alice's sees the membership change.
    await bob.leave(roomId);
    await waitFor("bob's room is left", () => bob.getRoom(roomId)?.getMyMembership() === "leave");
    await waitFor("alice sees bob left", () => aliceRoom.getMember(bob.getUserId())?.membership === "leave");
    r.bob_membership_after_leave = bob.getRoom(roomId).getMyMembership();
    r.alice_sees_bob_membership = aliceRoom.getMember(bob.getUserId()).membership;
    return r;
}

/**
 * A second device's first sync, as when Element opens on a new machine: lazy-loaded members, a limited
 * timeline, the room summary (heroes, member counts) naming an unnamed room, back-pagination and /members.
 */
async function freshDeviceScenario(alice, bob, carol) {
    const r = {};
    const invite = [bob.getUserId(), carol.getUserId()];
    const { room_id: roomId } = await alice.createRoom({ preset: "private_chat", invite });
    await carol.setDisplayName("Carol (SRE)");
    await bob.joinRoom(roomId);
    await carol.joinRoom(roomId);
    await waitFor("alice sees three joined", () => alice.getRoom(roomId)?.getJoinedMemberCount() === 3);
    for (let i = 1; i <= 12; i++) await alice.sendTextMessage(roomId, `alert ${i}`);

    const { localpart, password } = bob.tocsinLogin;
    const login = await createClient({ baseUrl }).loginRequest({
        type: "m.login.password", identifier: { type: "m.id.user", user: localpart }, password,
    });
    const bob2 = createClient({
        baseUrl,
        userId: login.user_id,
        accessToken: login.access_token,
        deviceId: login.device_id,
    });
    clients.push(bob2);
    await start(bob2, 5);
    const room = bob2.getRoom(roomId);
    r.room_name = room.name;
    r.joined_member_count = room.getJoinedMemberCount();
    r.initial_timeline = timelineBodies(room);
    r.unread_total = room.getUnreadNotificationCount(NotificationCountType.Total);
    // carol never speaks: only the heroes rule of lazy-loading brings her membership before /members.
    r.carol_loaded_before_members = Boolean(room.getMember(carol.getUserId()));
    r.alice_loaded_before_members = Boolean(room.getMember(alice.getUserId()));
    await room.loadMembersIfNeeded();
    r.joined_after_members = room.getJoinedMembers().map((m) => m.userId).sort();
    for (let i = 0; i < 5 && timelineBodies(room).length < 12; i++) {
        if (!(await bob2.scrollback(room, 10)) || !room.oldState.paginationToken) break;
    }
    r.timeline_after_scrollback = timelineBodies(room);
    bob2.stopClient();
    return r;
}

/** An encrypted room: alice's rust crypto encrypts with megolm, bob's decrypts; both SDKs report the state. */
async function encryptedScenario(alice, bob) {
    const r = {};
    const { room_id: roomId } = await alice.createRoom({
        name: "js-sdk encrypted",
        preset: "private_chat",
        invite: [bob.getUserId()],
        initial_state: [
            { type: EventType.RoomEncryption, state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
        ],
    });
    r.room_id = roomId;
    await waitFor("bob sees the encrypted invite", () => bob.getRoom(roomId)?.getMyMembership() === "invite");
    await bob.joinRoom(roomId);
    const aliceRoom = await waitFor("alice sees bob join the encrypted room", () => {
        const room = alice.getRoom(roomId);
        return room?.getMember(bob.getUserId())?.membership === "join" ? room : null;
    });
    const bobRoom = bob.getRoom(roomId);
    // Each crypto learns the room is encrypted from the m.room.encryption state in its own /sync: bob's
    // joinRoom resolves on the /join answer, possibly before his /sync has brought the joined room's state.
    const encryptionEnabled = (client, who) =>
        waitFor(`${who}'s crypto knows the room is encrypted`, () => client.getCrypto().isEncryptionEnabledInRoom(roomId))
            .catch(() => false);
    r.alice_room_encrypted = await encryptionEnabled(alice, "alice");
    r.bob_room_encrypted = await encryptionEnabled(bob, "bob");
    // alice's crypto must learn bob's device from /keys/query before it can share the room key with it. Once it
    // tracks bob (from his membership in this encrypted room) that query runs in the background and
    // getUserDeviceInfo waits at most 1 s for it, answering an empty list after that: wait for the answer.
    const bobDevices = async () =>
        [...((await alice.getCrypto().getUserDeviceInfo([bob.getUserId()], true)).get(bob.getUserId())?.keys() ?? [])];
    r.alice_knows_bob_devices = await waitFor("alice's crypto knows bob's devices", async () => {
        const ids = await bobDevices();
        return ids.length ? ids : null;
    }, 20000).catch(() => bobDevices());
    const sent = await alice.sendTextMessage(roomId, "encrypted: page the DBA");
    r.sent_event_id = sent.event_id;
    const ev = await waitFor("bob has the encrypted event", () => bobRoom.findEventById(sent.event_id), 20000);
    r.wire_type = ev.getWireType();
    await waitFor("bob decrypted it", async () => {
        await bob.decryptEventIfNeeded(ev);
        return !ev.isBeingDecrypted() && !ev.isDecryptionFailure() && ev.getType() === EventType.RoomMessage;
    }, 20000).catch((e) => {
        r.decryption_failure = ev.decryptionFailureReason ?? ev.getContent().body;
        throw e;
    });
    r.bob_decrypted_body = ev.getContent().body;
    r.bob_sees_sender = ev.getSender();
    // The shield depends on bob's crypto knowing alice's device, from its own background /keys/query, which
    // decryption does not wait for: wait for it (an unknown device would show another shield).
    await waitFor("bob's crypto knows alice's device", () =>
        bob.getCrypto().getDeviceVerificationStatus(alice.getUserId(), alice.getDeviceId()), 20000);
    const info = await bob.getCrypto().getEncryptionInfoForEvent(ev);
    r.bob_encryption_info = { shieldColour: info.shieldColour, shieldReason: info.shieldReason };

    // And back: bob's reply is decrypted by alice (bob's outbound session, alice's device from /keys/query).
    const back = await bob.sendTextMessage(roomId, "encrypted: DBA paged");
    const aev = await waitFor("alice has bob's encrypted reply", () => aliceRoom.findEventById(back.event_id), 20000);
    await waitFor("alice decrypted bob's reply", async () => {
        await alice.decryptEventIfNeeded(aev);
        return !aev.isDecryptionFailure() && aev.getType() === EventType.RoomMessage;
    }, 20000);
    r.alice_decrypted_body = aev.getContent().body;
    r.alice_reply_wire_type = aev.getWireType();

    // Cross-signing (UIA-protected /keys/device_signing/upload, /keys/signatures/upload): bob's crypto must
    // learn it through device_lists.changed in /sync and a new /keys/query, after which alice's device is
    // signed by its owner and her messages lose the red "unsigned device" shield.
    await alice.getCrypto().bootstrapCrossSigning({
        authUploadDeviceSigningKeys: (makeRequest) => withPasswordUia(alice, makeRequest),
    });
    r.alice_cross_signing_ready = await alice.getCrypto().isCrossSigningReady();
    const aliceDevice = alice.getDeviceId();
    await waitFor("bob sees alice's device signed by her", async () =>
        (await bob.getCrypto().getDeviceVerificationStatus(alice.getUserId(), aliceDevice))?.signedByOwner, 20000);
    const status = await bob.getCrypto().getDeviceVerificationStatus(alice.getUserId(), aliceDevice);
    r.bob_sees_alice_device = {
        signedByOwner: status.signedByOwner,
        crossSigningVerified: status.crossSigningVerified,
    };
    const third = await alice.sendTextMessage(roomId, "encrypted: after cross-signing");
    const tev = await waitFor("bob has the third encrypted event", () => bobRoom.findEventById(third.event_id), 20000);
    await waitFor("bob decrypted the third", async () => {
        await bob.decryptEventIfNeeded(tev);
        return !tev.isDecryptionFailure() && tev.getType() === EventType.RoomMessage;
    }, 20000);
    const tinfo = await bob.getCrypto().getEncryptionInfoForEvent(tev);
    r.bob_third_body = tev.getContent().body;
    r.bob_third_shield = { shieldColour: tinfo.shieldColour, shieldReason: tinfo.shieldReason };

    // Server-side key backup (/room_keys/version, /room_keys/keys): alice's crypto creates a version and
    // uploads her megolm sessions to it.
    await alice.getCrypto().resetKeyBackup();
    const version = await waitFor("alice's backup is active", () => alice.getCrypto().getActiveSessionBackupVersion());
    r.backup_version_active = version;
    r.backup_info_version = (await alice.getCrypto().getKeyBackupInfo())?.version;
    // The SDK's upload loop first sleeps a random 0-10 s (backupKeysLoop), so leave room for that and a slow upload.
    const keys = await waitFor("alice's room keys reach the backup", async () => {
        const body = await alice.http.authedRequest("GET", "/room_keys/keys", { version });
        return Object.keys(body.rooms?.[roomId]?.sessions ?? {}).length ? body : null;
    }, 30000);
    r.backed_up_sessions = Object.keys(keys.rooms[roomId].sessions).length;
    return r;
}

async function main() {
    if (!baseUrl) throw new Error("usage: node scenario.mjs <homeserver base URL>");
    const suffix = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
    const alice = await registerAndLogin(`jsalice${suffix}`, "correct horse battery");
    const bob = await registerAndLogin(`jsbob${suffix}`, "correct horse battery");
    results.users = [alice.getUserId(), bob.getUserId()];
    // Rust crypto (WASM) with its in-memory store, before startClient as Element does it.
    try {
        await alice.initRustCrypto({ useIndexedDB: false });
        await bob.initRustCrypto({ useIndexedDB: false });
        results.crypto_init = "ok";
    } catch (e) {
        results.crypto_init = String(e.stack || e);
    }
    await start(alice);
    await start(bob);
    results.prepared = true;
    results.plain = await plainScenario(alice, bob);
    const carol = await registerAndLogin(`jscarol${suffix}`, "correct horse battery");
    results.fresh_device = await freshDeviceScenario(alice, bob, carol);
    if (results.crypto_init === "ok") results.encrypted = await encryptedScenario(alice, bob);
    finish(true);
}

main().catch((e) => finish(false, e));
