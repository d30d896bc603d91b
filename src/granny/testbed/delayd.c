/* granny-delayd: the testbed's userspace delay stage (the kernel here has no netem).
 *
 * Theory of operation
 * -------------------
 * The router namespace routes every packet that arrives from an endpoint into a TUN device
 * (policy routing: "from any endpoint interface, lookup table 100: default dev <tun>").  This
 * program reads each IP packet from the TUN device, looks up the directed pair (source, destination)
 * by the last octet of the two IPv4 addresses, and then:
 *   - drops it if the pair is cut, or with the pair's loss probability;
 *   - otherwise gives it a due time  now + latency + uniform(-jitter, +jitter), raised to the due
 *     time of the previous packet of the same pair so a pair never reorders (TCP stays sane);
 *   - keeps a copy in a min-heap ordered by (due, arrival sequence) and writes it back into the TUN
 *     device when due.  The kernel then sees it arrive on the TUN device and forwards it by the
 *     main table to the destination endpoint, where tc htb applies the pair's bandwidth.
 * Writing back to the same device is what makes the delay hold for every protocol (ICMP, UDP, TCP).
 *
 * With --gso 1 the device carries a virtio-net header (IFF_VNET_HDR + TUNSETOFFLOAD), so TCP
 * segmentation-offload super-packets (up to 64 KiB) and partial checksums pass through whole: one
 * read and one write per 64 KiB instead of per 1500 bytes.  Loss must hit wire-sized packets, so on
 * a lossy pair a TCP super-packet is cut into MSS-sized segments here first (split_tcp4).
 *
 * The pair table is a text file reloaded on SIGHUP; each line is
 *     <src octet> <dst octet> <latency ns> <jitter ns> <loss parts-per-billion> <cut 0|1>
 * with octet 0 meaning "any" (the default row is "0 0 ...") plus a "gen N" line; after a reload the
 * generation is written to <config>.ack so the caller knows the new table is in force.  SIGUSR1
 * prints counters (and how late packets left, on average and at worst) to stderr.
 *
 * Timing: ppoll() sleeps until the earliest due time.  Its wake-up overshoot grows with the sleep
 * length on this VM (0.05 ms at 1 ms, 0.2 ms at 50 ms), so it is learned per power-of-two sleep
 * length and the sleep is shortened by it; packets up to 20 us early are sent rather than slept on.
 * Timer slack is set to 1 ns.  The queue is bounded (--max-queue packets, --max-bytes bytes); past
 * that packets are tail-dropped like a full router buffer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

typedef struct { uint64_t lat, jit, loss; int cut; } rule_t;
typedef struct { uint64_t due, seq; uint32_t len; unsigned char *buf; } entry_t;

static rule_t rules[256][256];      /* [src octet][dst octet]; filled from the config */
static uint64_t last_due[256][256]; /* per-pair FIFO floor */
static entry_t *heap;
static size_t heap_n, max_queue, queued_bytes, max_bytes;
static unsigned char rbuf[65536 + 256]; /* every read lands here; queued packets get a malloc'd copy */
static volatile sig_atomic_t want_reload = 1, want_stats, want_exit;
static const char *config_path;
static uint64_t rng = 0x9E3779B97F4A7C15ull, seq_no;
static uint64_t n_in, n_out, n_loss, n_cut, n_full, n_short, n_late, late_sum, late_max;
static size_t hdr_len; /* sizeof(struct virtio_net_hdr) with --gso, else 0 */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t next_rand(void) { /* xorshift64* */
    rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}

static void on_signal(int sig) {
    if (sig == SIGHUP) want_reload = 1;
    else if (sig == SIGUSR1) want_stats = 1;
    else want_exit = 1;
}

static void load_config(void) {
    FILE *f = fopen(config_path, "r");
    if (!f) { fprintf(stderr, "delayd: cannot open %s: %s\n", config_path, strerror(errno)); return; }
    static rule_t fresh[256][256];
    memset(fresh, 0, sizeof fresh);
    char line[256];
    unsigned s, d; unsigned long long lat, jit, loss, gen = 0; int cut;
    /* pass 0: wildcard rows (octet 0 = any) fill the table; pass 1: exact pairs override them */
    for (int pass = 0; pass < 2; pass++) {
        rewind(f);
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, "gen %llu", &gen) == 1) continue;
            if (sscanf(line, "%u %u %llu %llu %llu %d", &s, &d, &lat, &jit, &loss, &cut) != 6) continue;
            if (s > 255 || d > 255 || (s && d) != pass) continue;
            rule_t r = { lat, jit, loss, cut };
            if (pass) { fresh[s][d] = r; continue; }
            for (unsigned a = 0; a < 256; a++)
                for (unsigned b = 0; b < 256; b++)
                    if ((s == 0 || s == a) && (d == 0 || d == b)) fresh[a][b] = r;
        }
    }
    fclose(f);
    memcpy(rules, fresh, sizeof rules);
    /* acknowledge: <config>.ack holds the generation now in force */
    char ack[4096], tmp[4200];
    snprintf(ack, sizeof ack, "%s.ack", config_path);
    snprintf(tmp, sizeof tmp, "%s.tmp", ack);
    FILE *out = fopen(tmp, "w");
    if (out) { fprintf(out, "%llu\n", gen); fclose(out); rename(tmp, ack); }
}

static int entry_less(const entry_t *a, const entry_t *b) {
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_push(entry_t e) {
    size_t i = heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!entry_less(&e, &heap[p])) break;
        heap[i] = heap[p]; i = p;
    }
    heap[i] = e;
}

static entry_t heap_pop(void) {
    entry_t top = heap[0], last = heap[--heap_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= heap_n) break;
        if (c + 1 < heap_n && entry_less(&heap[c + 1], &heap[c])) c++;
        if (!entry_less(&heap[c], &last)) break;
        heap[i] = heap[c]; i = c;
    }
    if (heap_n) heap[i] = last;
    return top;
}

static void print_stats(void) {
    fprintf(stderr, "delayd: in=%llu out=%llu loss=%llu cut=%llu full=%llu short=%llu queued=%zu "
            "late_mean_us=%.1f late_max_us=%.1f\n",
            (unsigned long long)n_in, (unsigned long long)n_out, (unsigned long long)n_loss,
            (unsigned long long)n_cut, (unsigned long long)n_full, (unsigned long long)n_short, heap_n,
            n_late ? (double)late_sum / (double)n_late / 1e3 : 0.0, (double)late_max / 1e3);
    n_late = late_sum = late_max = 0;
}

static void emit(int fd, const unsigned char *buf, uint32_t len) {
    if (write(fd, buf, len) == (ssize_t)len) n_out++; else n_short++;
}

/* Queue (or forward at once) one packet; buf is transient, a queued packet gets its own copy. */
static void admit(int fd, const unsigned char *buf, uint32_t len, uint64_t now, const rule_t *r,
                  unsigned s, unsigned d) {
    if (r->loss && next_rand() % 1000000000ull < r->loss) { n_loss++; return; }
    uint64_t delay = r->lat;
    if (r->jit) {
        uint64_t off = next_rand() % (2 * r->jit + 1);
        delay = delay + off >= r->jit ? delay + off - r->jit : 0;
    }
    uint64_t due = now + delay;
    if (due < last_due[s][d]) due = last_due[s][d];
    last_due[s][d] = due;
    if (due <= now && heap_n == 0) { emit(fd, buf, len); return; }
    unsigned char *copy = heap_n < max_queue && queued_bytes + len <= max_bytes ? malloc(len) : NULL;
    if (!copy) { n_full++; return; } /* a full router buffer: tail drop */
    memcpy(copy, buf, len);
    queued_bytes += len;
    entry_t e = { due, seq_no++, len, copy };
    heap_push(e);
}

static uint32_t sum16(const unsigned char *p, size_t n, uint32_t acc) {
    for (size_t i = 0; i + 1 < n; i += 2) acc += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (n & 1) acc += (uint32_t)p[n - 1] << 8;
    return acc;
}

static uint16_t fold(uint32_t acc) {
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)acc;
}

static void put16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)(v >> 8); p[1] = (unsigned char)v; }

/* Loss must hit wire-sized packets, not 64 KiB TSO super-packets: decide loss per MSS-sized segment
 * (as a NIC would cut them), and pass each run of surviving segments on as one (smaller) super-packet,
 * so that a lossy pair costs little more than a clean one. */
static void emit_run(int fd, const unsigned char *src, uint32_t a, uint32_t b, uint64_t now,
                     const rule_t *r, unsigned s, unsigned d) {
    static unsigned char o[65536 + 256];
    struct virtio_net_hdr vh;
    memcpy(&vh, src, sizeof vh);
    const unsigned char *ip = src + hdr_len, *tcp = ip + (ip[0] & 15) * 4;
    uint32_t ihl = (uint32_t)(ip[0] & 15) * 4u, hl = ihl + (uint32_t)(tcp[12] >> 4) * 4u, mss = vh.gso_size;
    uint32_t payload = (uint32_t)(ip[2] << 8 | ip[3]) - hl, off = a * mss;
    uint32_t end = b * mss < payload ? b * mss : payload, plen = end - off;
    struct virtio_net_hdr oh = vh;
    if (b - a == 1) { oh.gso_type = VIRTIO_NET_HDR_GSO_NONE; oh.gso_size = 0; }
    memcpy(o, &oh, sizeof oh);
    unsigned char *oip = o + hdr_len, *otcp = oip + ihl;
    memcpy(oip, ip, hl);
    memcpy(oip + hl, ip + hl + off, plen);
    put16(oip + 2, (uint16_t)(hl + plen));
    put16(oip + 4, (uint16_t)((ip[4] << 8 | ip[5]) + a));
    put16(oip + 10, 0);
    put16(oip + 10, (uint16_t)~fold(sum16(oip, ihl, 0)));
    uint32_t sq = ((uint32_t)tcp[4] << 24 | (uint32_t)tcp[5] << 16 | (uint32_t)tcp[6] << 8 | tcp[7]) + off;
    otcp[4] = (unsigned char)(sq >> 24); otcp[5] = (unsigned char)(sq >> 16);
    otcp[6] = (unsigned char)(sq >> 8); otcp[7] = (unsigned char)sq;
    if (end < payload) otcp[13] &= (unsigned char)~0x09; /* FIN, PSH only on the last */
    if (a > 0) otcp[13] &= (unsigned char)~0x80;         /* CWR only on the first */
    uint32_t tlen = hl - ihl + plen, pseudo = sum16(ip + 12, 8, 0) + 6u + tlen;
    put16(otcp + 16, 0);
    if (vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) put16(otcp + 16, fold(pseudo));
    else put16(otcp + 16, (uint16_t)~fold(sum16(otcp, tlen, pseudo)));
    admit(fd, o, (uint32_t)hdr_len + hl + plen, now, r, s, d);
}

static void split_tcp4(int fd, const unsigned char *src, uint32_t len, uint64_t now, const rule_t *r,
                       unsigned s, unsigned d) {
    struct virtio_net_hdr vh;
    memcpy(&vh, src, sizeof vh);
    const unsigned char *ip = src + hdr_len;
    uint32_t ihl = (uint32_t)(ip[0] & 15) * 4u;
    if (len < hdr_len + ihl + 20) return;
    uint32_t hl = ihl + (uint32_t)(ip[ihl + 12] >> 4) * 4u, mss = vh.gso_size;
    uint32_t tot = (uint32_t)(ip[2] << 8 | ip[3]);
    if (mss == 0 || len < hdr_len + hl || tot != len - hdr_len || tot < hl) return;
    uint32_t nseg = (tot - hl + mss - 1) / mss, start = 0;
    if (nseg == 0) { admit(fd, src, len, now, r, s, d); return; }
    rule_t clean = *r;
    clean.loss = 0;
    int open = 0;
    for (uint32_t k = 0; k < nseg; k++) {
        if (next_rand() % 1000000000ull < r->loss) {
            n_loss++;
            if (open) emit_run(fd, src, start, k, now, &clean, s, d);
            open = 0;
        } else if (!open) {
            open = 1;
            start = k;
        }
    }
    if (open && start == 0) admit(fd, src, len, now, &clean, s, d); /* nothing lost: pass it whole */
    else if (open) emit_run(fd, src, start, nseg, now, &clean, s, d);
}

/* Classify one packet read into buf: pass through what is not IPv4, apply cut, loss and delay. */
static void classify(int fd, const unsigned char *buf, uint32_t len, uint64_t now) {
    const unsigned char *p = buf + hdr_len;
    n_in++;
    if (len < hdr_len + 20 || (p[0] >> 4) != 4) { emit(fd, buf, len); return; }
    unsigned s = p[15], d = p[19];
    const rule_t *r = &rules[s][d];
    if (r->cut) { n_cut++; return; }
    if (hdr_len && r->loss) {
        struct virtio_net_hdr vh;
        memcpy(&vh, buf, sizeof vh);
        if ((vh.gso_type & ~VIRTIO_NET_HDR_GSO_ECN) == VIRTIO_NET_HDR_GSO_TCPV4) {
            split_tcp4(fd, buf, len, now, r, s, d);
            return;
        }
    }
    admit(fd, buf, len, now, r, s, d);
}

/* Wake-up overshoot of ppoll grows with the sleep length on this VM (0.05 ms at 1 ms, 0.2 ms at
 * 50 ms), so we learn it per power-of-two sleep length and wake that much early. */
static uint64_t overshoot[40];

static int bucket(uint64_t ns) {
    int b = 0;
    while (ns > 1 && b < 39) { ns >>= 1; b++; }
    return b;
}

int main(int argc, char **argv) {
    const char *tun = NULL;
    max_queue = 65536;
    max_bytes = 256u << 20;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--tun")) tun = argv[i + 1];
        else if (!strcmp(argv[i], "--config")) config_path = argv[i + 1];
        else if (!strcmp(argv[i], "--max-queue")) max_queue = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--max-bytes")) max_bytes = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--gso")) hdr_len = strcmp(argv[i + 1], "0") ? sizeof(struct virtio_net_hdr) : 0;
    }
    if (!tun || !config_path || max_queue == 0) {
        fprintf(stderr, "usage: %s --tun NAME --config FILE [--gso 0|1] [--max-queue N] [--max-bytes N]\n",
                argv[0]);
        return 2;
    }
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    rng ^= now_ns() ^ ((uint64_t)getpid() << 32);
    heap = calloc(max_queue, sizeof *heap);
    if (!heap) { perror("delayd: calloc"); return 1; }

    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) { perror("delayd: /dev/net/tun"); return 1; }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (hdr_len ? IFF_VNET_HDR : 0);
    strncpy(ifr.ifr_name, tun, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) { perror("delayd: TUNSETIFF"); return 1; }
    if (hdr_len && ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN) < 0) {
        perror("delayd: TUNSETOFFLOAD");
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGHUP, &sa, NULL); sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL); sigaction(SIGINT, &sa, NULL);
    sigset_t block, orig;
    sigemptyset(&block);
    sigaddset(&block, SIGHUP); sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGTERM); sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &orig);
    load_config();
    want_reload = 0;
    printf("READY tun=%s gso=%d\n", tun, hdr_len ? 1 : 0);
    fflush(stdout);

    const uint64_t tol = 20000; /* deliver up to 20 us early rather than sleep again */
    while (!want_exit) {
        if (want_reload) { want_reload = 0; load_config(); }
        if (want_stats) { want_stats = 0; print_stats(); }
        uint64_t now = now_ns();
        while (heap_n && heap[0].due <= now + tol) {
            entry_t e = heap_pop();
            uint64_t late = now > e.due ? now - e.due : 0;
            n_late++; late_sum += late;
            if (late > late_max) late_max = late;
            emit(fd, e.buf, e.len);
            queued_bytes -= e.len;
            free(e.buf);
        }
        struct timespec ts, *tsp = NULL;
        uint64_t sleep_ns = 0;
        if (heap_n) {
            uint64_t wait = heap[0].due - now, early = overshoot[bucket(wait)];
            sleep_ns = wait > early + tol ? wait - early : wait - tol;
            ts.tv_sec = (time_t)(sleep_ns / 1000000000ull);
            ts.tv_nsec = (long)(sleep_ns % 1000000000ull);
            tsp = &ts;
        }
        struct pollfd pfd = { fd, POLLIN, 0 };
        int rc = ppoll(&pfd, 1, tsp, &orig);
        if (rc < 0 && errno != EINTR) { perror("delayd: ppoll"); return 1; }
        uint64_t woke = now_ns();
        if (rc == 0 && tsp) { /* a timed-out sleep: learn how late it woke */
            int b = bucket(sleep_ns);
            uint64_t late = woke > now + sleep_ns ? woke - now - sleep_ns : 0;
            if (late > 5000000) late = 5000000;
            overshoot[b] = (overshoot[b] * 3 + late) / 4;
        }
        if (rc <= 0 || !(pfd.revents & POLLIN)) continue;
        for (int burst = 0; burst < 256; burst++) {
            ssize_t n = read(fd, rbuf, sizeof rbuf);
            if (n <= 0) break;
            classify(fd, rbuf, (uint32_t)n, woke);
        }
    }
    print_stats();
    return 0;
}
