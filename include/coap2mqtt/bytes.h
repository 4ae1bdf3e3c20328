/*
 * bytes.h - the little-endian integers of our on-disk records (spool,
 * command journal) and a write() that finishes or fails, written once for
 * every file format of the gateway.
 *
 * Layer: base
 */
#ifndef COAP2MQTT_BYTES_H
#define COAP2MQTT_BYTES_H

#include <stddef.h>
#include <stdint.h>

void bytes_put16(uint8_t *p, uint16_t v);
void bytes_put32(uint8_t *p, uint32_t v);
void bytes_put64(uint8_t *p, uint64_t v);
uint16_t bytes_get16(const uint8_t *p);
uint32_t bytes_get32(const uint8_t *p);
uint64_t bytes_get64(const uint8_t *p);

/* Writes all 'len' bytes, going on after EINTR and short writes.  0, or -1
 * with errno set (a write that returned 0 counts as failed). */
int bytes_write_all(int fd, const void *buf, size_t len);

#endif
