/*
 * hash_free.h - empties a uthash table whose elements were malloc'd, the
 * way every room's free function needs it (uthash's HASH_CLEAR forgets
 * the elements but does not free them).
 *
 * Layer: base
 */
#ifndef COAP2MQTT_HASH_FREE_H
#define COAP2MQTT_HASH_FREE_H

#include <stdlib.h>
#include <uthash.h>

/* Frees every element of table 'head' (elements of type 'type', linked by
 * their 'hh' handle) and leaves 'head' NULL. */
#define HASH_FREE_ALL(head, type)                                   \
    do {                                                            \
        type *hf_el_, *hf_tmp_;                                     \
        HASH_ITER(hh, head, hf_el_, hf_tmp_) {                      \
            HASH_DEL(head, hf_el_);                                 \
            free(hf_el_);                                           \
        }                                                           \
    } while (0)

#endif
