// The Kotlin bindings against a real relay from haven-test-relay (HAVEN_TEST_RELAY_BIN, set by
// `cargo xtask test`): two users exchange messages both ways (sync and a listener), a diary
// entry is written and read back (and a wrong password refused), the account's lifecycle
// (devices, rename, password change, logout everywhere, deletion), and bad input comes back as a
// typed HavenException; push: endpoints registered, listed and removed within the limits, and a
// wake-up fetching, processing and acknowledging offline mail once. Prints "kotlin: N passed, M failed" and exits non-zero on a failure.

import haven.*
import java.io.File
import java.nio.file.Files
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.runBlocking

const val PASSWORD = "kotlin bindings: correct horse"
val RUN: String = java.lang.Long.toHexString(System.nanoTime() and 0xffffff)

fun check(condition: Boolean, what: String) {
    if (!condition) throw AssertionError(what)
}

inline fun <reified T : Throwable> expectThrows(what: String, block: () -> Unit) {
    try {
        block()
    } catch (e: Throwable) {
        if (e is T) return
        throw AssertionError("$what: expected ${T::class.simpleName}, got $e")
    }
    throw AssertionError("$what: expected ${T::class.simpleName}, nothing was thrown")
}

class Relay(val process: Process, val url: String)

/** Starts `haven-test-relay` (the workspace's test-relay launcher) and reads its address. */
fun startRelay(dir: File): Relay {
    val launcher = System.getenv("HAVEN_TEST_RELAY_BIN") ?: error("HAVEN_TEST_RELAY_BIN is not set")
    val builder = ProcessBuilder(launcher, "--set", "HAVEN_LOG=info")
    builder.redirectError(File(dir, "relay.log"))
    val process = builder.start()
    val line = process.inputStream.bufferedReader().readLine()
        ?: throw AssertionError("haven-test-relay did not start; see ${File(dir, "relay.log")}")
    val url = Regex("\"url\":\"([^\"]+)\"").find(line)?.groupValues?.get(1)
        ?: throw AssertionError("unexpected first line from haven-test-relay: $line")
    return Relay(process, url)
}

/** Queues every event; called on a library thread. */
class Collector : EventListener {
    val events = LinkedBlockingQueue<Event>()

    override fun onEvent(event: Event) {
        events.put(event)
    }

    fun waitForText(text: String, seconds: Long = 30): Message {
        val end = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds)
        while (System.nanoTime() < end) {
            val e = events.poll(200, TimeUnit.MILLISECONDS) ?: continue
            if (e is Event.NewMessage && e.message.text == text) return e.message
        }
        throw AssertionError("no message '$text' within ${seconds}s")
    }
}

fun direct(account: String): Conversation = Conversation.Direct(account)

suspend fun register(relay: Relay, dir: File, name: String): Messenger =
    Messenger.register(relay.url, File(dir, "$name.db").toString(), StorageKey.generate(), "${name}_kt_$RUN", PASSWORD)

suspend fun messagesBothWays(relay: Relay, dir: File) {
    val alice = register(relay, dir, "alice")
    val bob = register(relay, dir, "bob")
    val contact = alice.addContactByUsername("bob_kt_$RUN")
    check(contact.accountId == bob.accountId(), "contact is bob")

    val hello = "hello bob from kotlin, marzipan"
    val id = alice.sendText(direct(bob.accountId()), hello)
    check(id.length == 32, "message id is 32 hex digits")
    check(bob.sync() >= 1u, "bob fetched something")
    val history = bob.history(direct(alice.accountId()))
    check(history.map { it.text } == listOf(hello), "bob's history: ${history.map { it.text }}")
    check(history[0].sender == alice.accountId(), "sender is alice")

    val listener = Collector()
    alice.start(listener)
    val reply = "hi alice, from kotlin bob, lanternfish"
    bob.sendText(direct(alice.accountId()), reply)
    val got = listener.waitForText(reply)
    check(got.sender == bob.accountId(), "reply sender is bob")

    val numbers = alice.safetyNumbers(bob.accountId())
    check(numbers.size == 1 && numbers[0].digits.length == 60, "one 60-digit safety number")
    check(numbers[0].digits == bob.safetyNumbers(alice.accountId())[0].digits, "same on both sides")
    alice.stop()
    alice.shutdown()
    bob.shutdown()
}

fun now(): ULong = System.currentTimeMillis().toULong()

suspend fun diaryRoundTrip(relay: Relay, dir: File) {
    val key = StorageKey.generate()
    val path = File(dir, "diary.db").toString()
    val fast = KdfSettings(memoryKib = 19456u, passes = 2u, lanes = 1u)
    val diary = Diary.create(
        relay.url, path, key,
        AccountAccess.Register("diarist_kt_$RUN", PASSWORD),
        "kotlin diary password", fast,
    )
    check(diary.takeRecoveryCodes().size == 10, "ten recovery codes")
    val t = now()
    val id = diary.write(DiaryEntry("Kotlin day", "Wrote bindings, pangolin.", "calm", listOf("work"), t, t))
    diary.sync()
    diary.lock()
    expectThrows<HavenException.Closed>("closed diary") { diary.get(id) }
    expectThrows<HavenException.WrongPassword>("wrong diary password") {
        Diary.unlock(relay.url, path, key, "not the password")
    }
    val reopened = Diary.unlock(relay.url, path, key, "kotlin diary password")
    val entry = reopened.get(id) ?: throw AssertionError("entry missing after unlock")
    check(entry.body == "Wrote bindings, pangolin." && entry.tags == listOf("work"), "entry read back")
    check(reopened.search("pango").map { it.id } == listOf(id), "search finds it")
}

suspend fun accountLifecycle(relay: Relay, dir: File) {
    val newPassword = "kotlin bindings: a second password"
    val dana = register(relay, dir, "dana")
    val link = LinkRequest.start(relay.url, File(dir, "dana_tablet.db").toString(), StorageKey.generate())
    dana.approveLink(link.code())
    val tablet = link.finish(30u)

    val devices = dana.devices()
    check(devices.map { it.number } == listOf(1u, 2u), "two devices: ${devices.map { it.number }}")
    check(devices[0].current && !devices[1].current, "the first is this one")
    dana.renameDevice(2u, "sealed tablet".toByteArray())
    check(tablet.devices()[1].name?.contentEquals("sealed tablet".toByteArray()) == true, "name blob")

    expectThrows<HavenException.WrongPassword>("password change with a wrong password") {
        dana.changePassword("not it", newPassword, null)
    }
    dana.changePassword(PASSWORD, newPassword)
    expectThrows<HavenException.SessionRevoked>("the tablet's session ended") { tablet.devices() }
    tablet.relogin(newPassword)
    check(tablet.devices().size == 2, "the tablet is back")

    dana.logoutEverywhere()
    expectThrows<HavenException.SessionRevoked>("logged out everywhere") { dana.devices() }
    expectThrows<HavenException.SessionRevoked>("the tablet too") { tablet.devices() }
    dana.relogin(newPassword)

    expectThrows<HavenException.WrongPassword>("deletion with a wrong password") {
        dana.deleteAccount(PASSWORD)
    }
    dana.deleteAccount(newPassword)
    expectThrows<HavenException.SessionRevoked>("deleted") { dana.devices() }
    expectThrows<HavenException.WrongPassword>("no such account any more") { dana.relogin(newPassword) }
    dana.shutdown()
    tablet.shutdown()
}

fun b64url(raw: ByteArray): String =
    java.util.Base64.getUrlEncoder().withoutPadding().encodeToString(raw)

suspend fun pushAndWakeUp(relay: Relay, dir: File) {
    val alice = register(relay, dir, "alice_push")
    val bob = register(relay, dir, "bob_push")
    bob.setReceiptPolicy(ReceiptPolicy.Immediate)
    alice.addContact(bob.accountId())
    val texts = listOf("kotlin wake one", "kotlin wake two")
    for (t in texts) alice.sendText(direct(bob.accountId()), t)

    // The push handler: one call fetches, processes and acknowledges.
    val summary = bob.handleWakeUp(0uL)
    check(summary.complete, "wake-up completed: $summary")
    check(summary.messages == 2u, "two new messages: $summary")
    check(summary.conversations == listOf(direct(alice.accountId())), "one conversation: $summary")
    check(bob.history(direct(alice.accountId())).map { it.text } == texts, "stored once, in order")
    val again = bob.handleWakeUp(10_000uL)
    check(again.messages == 0u && again.envelopes == 0u, "a duplicate push finds nothing: $again")

    // Endpoints: a gateway key is refused on the device when malformed; a Web Push
    // subscription is registered (idempotently), listed and removed.
    expectThrows<HavenException.InvalidInput>("bad app id") { bob.registerGatewayPush("bad app", "t") }
    // The P-256 base point, uncompressed: a valid subscription key (the relay checks the curve).
    val p256dh = b64url("046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5".chunked(2).map { it.toInt(16).toByte() }.toByteArray())
    val auth = b64url(ByteArray(16) { 3 })
    val endpoint = "https://push.example.test/kotlin/$RUN"
    val id = bob.registerWebPush(endpoint, p256dh, auth)
    check(bob.registerWebPush(endpoint, p256dh, auth) == id, "registering again is idempotent")
    check(bob.pushEndpoints().map { it.id to it.kind } == listOf(id to "web_push"), "listed")
    bob.removePushEndpoint(id)
    check(bob.pushEndpoints().isEmpty(), "removed")
    alice.shutdown()
    bob.shutdown()
}

suspend fun badInput(relay: Relay, dir: File) {
    expectThrows<HavenException.InvalidInput>("hex key") { StorageKey.fromHex("zz") }
    expectThrows<HavenException.InvalidInput>("key length") { StorageKey.fromBytes(ByteArray(31)) }
    expectThrows<HavenException.InvalidInput>("base64 key") { StorageKey.fromBase64("!!") }
    val carol = register(relay, dir, "carol")
    expectThrows<HavenException.InvalidInput>("malformed id") { carol.sendText(direct("not-an-id"), "x") }
    expectThrows<HavenException.UnknownContact>("unknown contact") {
        carol.sendText(direct("00".repeat(16)), "x")
    }
    expectThrows<HavenException.UnknownContact>("unknown contact safety number") {
        carol.safetyNumbers("11".repeat(16))
    }
    expectThrows<HavenException.InvalidInput>("malformed group id") {
        carol.history(Conversation.Group("xyz"))
    }
    expectThrows<HavenException.NotFound>("unknown group") {
        carol.sendText(Conversation.Group("22".repeat(16)), "x")
    }
    carol.shutdown()
    expectThrows<HavenException.Closed>("shut down") { carol.accountId() }
    expectThrows<HavenException.Closed>("shut down async") { carol.sync() }
    expectThrows<HavenException.WrongStorageKey>("wrong storage key") {
        Messenger.load(relay.url, File(dir, "carol.db").toString(), StorageKey.generate())
    }
}

fun main() {
    val dir = Files.createTempDirectory("haven-kotlin").toFile()
    val relay = startRelay(dir)
    var passed = 0
    var failed = 0
    try {
        val tests = listOf<Pair<String, suspend () -> Unit>>(
            "messages both ways" to { messagesBothWays(relay, dir) },
            "diary round trip" to { diaryRoundTrip(relay, dir) },
            "account lifecycle" to { accountLifecycle(relay, dir) },
            "bad input" to { badInput(relay, dir) },
            "push and wake-up" to { pushAndWakeUp(relay, dir) },
        )
        for ((name, test) in tests) {
            try {
                runBlocking { test() }
                println("ok   $name")
                passed++
            } catch (e: Throwable) {
                println("FAIL $name: $e")
                e.printStackTrace()
                failed++
            }
        }
    } finally {
        // Closing its stdin stops the relay gracefully.
        relay.process.outputStream.close()
        if (!relay.process.waitFor(30, TimeUnit.SECONDS)) relay.process.destroy()
        dir.deleteRecursively()
    }
    println("kotlin: $passed passed, $failed failed")
    if (failed > 0) kotlin.system.exitProcess(1)
}
