/* test_list.c - unit tests of the intrusive list (common/list.h) and ARRAY_SIZE (util.h):
 * insertion at both ends, order under iteration, removal of the head, the tail and a middle node,
 * removal during LIST_FOREACH_SAFE, and the unlinked state that list_remove's assertion reads.
 */
#include <string.h>

#include "list.h"
#include "unit.h"

typedef struct {
    int v;
    list_t node;
} item_t;

/* The values on the list from head to tail, into out (at most max), and their count. */
static size_t order(const list_t *head, int *out, size_t max)
{
    size_t n = 0;
    LIST_FOREACH(p, head)
    {
        if (n < max)
            out[n] = container_of(p, item_t, node)->v;
        n++;
    }
    return n;
}

UNIT_TEST(insert_remove)
{
    list_t head;
    list_init(&head);
    CHECK(list_empty(&head));
    CHECK(LIST_FIRST(&head, item_t, node) == NULL);

    item_t it[4];
    memset(it, 0, sizeof(it));
    for (int i = 0; i < 4; i++) {
        it[i].v = i;
        CHECK(!list_linked(&it[i].node));
    }
    list_insert_tail(&head, &it[1].node);
    list_insert_tail(&head, &it[2].node);
    list_insert_head(&head, &it[0].node);
    list_insert_tail(&head, &it[3].node);
    int got[8];
    CHECK_INT(order(&head, got, 8), 4);
    for (int i = 0; i < 4; i++)
        CHECK_INT(got[i], i);
    CHECK(LIST_FIRST(&head, item_t, node) == &it[0]);
    CHECK(LIST_LAST(&head, item_t, node) == &it[3]);

    list_remove(&it[2].node); /* middle */
    CHECK(!list_linked(&it[2].node));
    list_remove(&it[0].node); /* head */
    list_remove(&it[3].node); /* tail */
    CHECK_INT(order(&head, got, 8), 1);
    CHECK_INT(got[0], 1);
    list_remove(&it[1].node);
    CHECK(list_empty(&head));
    list_insert_head(&head, &it[2].node); /* a removed node can go back on */
    CHECK(LIST_LAST(&head, item_t, node) == &it[2]);
}

UNIT_TEST(foreach_safe)
{
    list_t head;
    list_init(&head);
    item_t it[6];
    memset(it, 0, sizeof(it));
    for (int i = 0; i < 6; i++) {
        it[i].v = i;
        list_insert_tail(&head, &it[i].node);
    }
    LIST_FOREACH_SAFE(p, tmp, &head)
    {
        if (container_of(p, item_t, node)->v % 2 == 0)
            list_remove(p);
    }
    int got[8];
    CHECK_INT(order(&head, got, 8), 3);
    CHECK_INT(got[0], 1);
    CHECK_INT(got[1], 3);
    CHECK_INT(got[2], 5);
    LIST_FOREACH_SAFE(p, tmp, &head)
    list_remove(p);
    CHECK(list_empty(&head));
    CHECK_INT(ARRAY_SIZE(it), 6);
}

UNIT_MAIN("test_list")
