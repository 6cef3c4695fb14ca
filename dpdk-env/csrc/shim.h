/* One-line, non-inline wrappers around DPDK's static-inline functions so Rust can
 * call them. Keep each wrapper trivial: behaviour belongs to DPDK. */
#ifndef WS_SHIM_H
#define WS_SHIM_H
#include <stdint.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

uint16_t ws_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t ws_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *ws_pktmbuf_alloc(struct rte_mempool *mp);
int ws_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned n);
void ws_pktmbuf_free(struct rte_mbuf *m);
uint32_t ws_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t ws_pktmbuf_nb_segs(const struct rte_mbuf *m);
uint16_t ws_pktmbuf_tailroom(const struct rte_mbuf *m);
uint16_t ws_pktmbuf_headroom(const struct rte_mbuf *m);
char *ws_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *ws_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *ws_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int ws_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
int ws_pktmbuf_linearize(struct rte_mbuf *m);
uint16_t ws_mbuf_refcnt_read(const struct rte_mbuf *m);
uint32_t ws_mbuf_rss_hash(const struct rte_mbuf *m);
/* Offsets of the rte_mbuf fields the Rust side reads directly (buf_addr, data_off,
 * data_len, ol_flags), as the C compiler lays them out: checked against bindgen's. */
void ws_mbuf_layout(size_t out[4]);
unsigned ws_lcore_id(void);
int ws_errno(void);
uint64_t ws_rdtsc(void);
void ws_pause(void);
unsigned ws_ring_mp_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n);
unsigned ws_ring_sc_dequeue_burst(struct rte_ring *r, void **objs, unsigned n);
unsigned ws_ring_count(const struct rte_ring *r);
#endif
