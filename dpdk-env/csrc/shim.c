#include <stddef.h>
#include <rte_config.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_pause.h>
#include <rte_prefetch.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include "shim.h"

uint16_t ws_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) { return rte_eth_rx_burst(port, queue, pkts, n); }
uint16_t ws_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) { return rte_eth_tx_burst(port, queue, pkts, n); }
struct rte_mbuf *ws_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }
int ws_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned n) { return rte_pktmbuf_alloc_bulk(mp, mbufs, n); }
void ws_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
uint32_t ws_pktmbuf_pkt_len(const struct rte_mbuf *m) { return rte_pktmbuf_pkt_len(m); }
uint16_t ws_pktmbuf_nb_segs(const struct rte_mbuf *m) { return m->nb_segs; }
uint16_t ws_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }
uint16_t ws_pktmbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }
char *ws_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
char *ws_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_prepend(m, len); }
char *ws_pktmbuf_adj(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_adj(m, len); }
int ws_pktmbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }
int ws_pktmbuf_linearize(struct rte_mbuf *m) { return rte_pktmbuf_linearize(m); }
uint16_t ws_mbuf_refcnt_read(const struct rte_mbuf *m) { return rte_mbuf_refcnt_read(m); }
uint32_t ws_mbuf_rss_hash(const struct rte_mbuf *m) { return m->hash.rss; }
void ws_mbuf_layout(size_t out[4]) {
    out[0] = offsetof(struct rte_mbuf, buf_addr);
    out[1] = offsetof(struct rte_mbuf, data_off);
    out[2] = offsetof(struct rte_mbuf, data_len);
    out[3] = offsetof(struct rte_mbuf, ol_flags);
}
unsigned ws_lcore_id(void) { return rte_lcore_id(); }
int ws_errno(void) { return rte_errno; }
uint64_t ws_rdtsc(void) { return rte_rdtsc(); }
void ws_pause(void) { rte_pause(); }
unsigned ws_ring_mp_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n) { return rte_ring_mp_enqueue_burst(r, objs, n, NULL); }
unsigned ws_ring_sc_dequeue_burst(struct rte_ring *r, void **objs, unsigned n) { return rte_ring_sc_dequeue_burst(r, objs, n, NULL); }
unsigned ws_ring_count(const struct rte_ring *r) { return rte_ring_count(r); }
