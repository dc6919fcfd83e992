/* list.h - an intrusive, circular, doubly-linked list: the node lives inside its owner.
 *
 * A head is a list_t initialised with list_init (it points at itself when empty). An owner embeds
 * a list_t per list it can be on; container_of (util.h) gets the owner back from a node. A node
 * that is on no list has next == NULL (list_remove leaves it so, and calloc starts it so), which
 * lets list_remove assert membership: unlinking a node twice is a programmer error, and with two
 * NULL checks gone from every call site, there is one place to get the pointer dance right.
 * Not thread-safe: a list belongs to one thread, as its owner does.
 */
#ifndef UTURN_LIST_H
#define UTURN_LIST_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>

#include "util.h"

typedef struct list {
    struct list *prev, *next;
} list_t;

static inline void list_init(list_t *head) { head->prev = head->next = head; }

/* A zeroed head (a calloc'd owner whose init failed or never ran) reads as empty, so close paths
 * need no "was it initialised" flag; inserting into one is still a bug. */
static inline bool list_empty(const list_t *head) { return !head->next || head->next == head; }

/* Whether a node is on a list (see the top of the file). */
static inline bool list_linked(const list_t *node) { return node->next != NULL; }

static inline void list_insert_between(list_t *node, list_t *prev, list_t *next)
{
    assert(prev && next);       /* the head was list_init'ed */
    assert(!list_linked(node)); /* already on a list: inserting again would corrupt both */
    node->prev = prev;
    node->next = next;
    prev->next = node;
    next->prev = node;
}

static inline void list_insert_head(list_t *head, list_t *node)
{
    list_insert_between(node, head, head->next);
}

static inline void list_insert_tail(list_t *head, list_t *node)
{
    list_insert_between(node, head->prev, head);
}

static inline void list_remove(list_t *node)
{
    assert(list_linked(node));
    assert(node->prev->next == node && node->next->prev == node);
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = node->next = NULL;
}

/* The first (head) or last (tail) owner on a list, or NULL when it is empty. */
#define LIST_FIRST(head, type, member)                                                             \
    (list_empty(head) ? NULL : container_of((head)->next, type, member))
#define LIST_LAST(head, type, member)                                                              \
    (list_empty(head) ? NULL : container_of((head)->prev, type, member))

/* Each node from head to tail; the body must not remove `pos` (use LIST_FOREACH_SAFE). */
#define LIST_FOREACH(pos, head)                                                                    \
    for (list_t *pos = (head)->next; pos && pos != (head); pos = pos->next)

/* Each node from head to tail; the body may remove `pos`. If it also removes the node after it
 * (a close that cascades), the walk ends there, at that node's NULL next: a sweep picks up the
 * rest on its next round, as it did with the hand-written lists this replaces. */
#define LIST_FOREACH_SAFE(pos, tmp, head)                                                          \
    for (list_t *pos = (head)->next, *tmp = pos ? pos->next : NULL; pos && pos != (head);          \
         pos = tmp, tmp = pos ? pos->next : NULL)

#endif
