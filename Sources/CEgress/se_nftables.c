#define _GNU_SOURCE
#include "se_nftables.h"
#include "se_netlink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>

/* Priorities as nft names them: dstnat (NF_IP_PRI_NAT_DST) and raw (NF_IP_PRI_RAW). */
enum { PRIORITY_DSTNAT = -100, PRIORITY_RAW = -300 };

enum { DNS_PORT = 53, MAX_MESSAGES = 64, BATCH_LIMIT = 32 * 1024 };

/* Where each family keeps its addresses, and what loopback is there. IPv4
 * loopback is 127.0.0.0/8, so one byte decides it (as nft itself compiles it). */
struct family {
    uint8_t nfproto;
    uint32_t saddr_offset;
    uint32_t daddr_offset;
    uint32_t loopback_length;
    const void *loopback;
};
static const uint8_t loopback4_first_byte = 127;
static const struct family families[] = {
    {NFPROTO_IPV4, 12, 16, 1, &loopback4_first_byte},
    {NFPROTO_IPV6, 8, 24, 16, &in6addr_loopback},
};

/* Requests for one nfnetlink batch, each named for errors. */
struct batch {
    struct mnl_nlmsg_batch *messages;
    uint32_t first_seq;
    uint32_t next_seq;
    const char *steps[MAX_MESSAGES];
    int error; /* set once building failed (ENOMEM, EMSGSIZE), else 0 */
};

static struct nlmsghdr *start_message(struct batch *batch, uint16_t type, uint16_t flags, const char *name) {
    if (batch->next_seq - batch->first_seq >= MAX_MESSAGES) {
        batch->error = EMSGSIZE;
        return NULL;
    }
    batch->steps[batch->next_seq - batch->first_seq] = name;
    return nftnl_nlmsg_build_hdr(mnl_nlmsg_batch_current(batch->messages), type, NFPROTO_INET, flags | NLM_F_ACK,
                                 batch->next_seq++);
}

static void finish_message(struct batch *batch) {
    /* The buffer has room for a whole message past the limit, so overflowing
     * it is caught here, after the fact, without harm. */
    if (!mnl_nlmsg_batch_next(batch->messages) && batch->error == 0) batch->error = EMSGSIZE;
}

static void add_table(struct batch *batch, uint16_t type, uint16_t flags, const char *name) {
    struct nftnl_table *table = nftnl_table_alloc();
    if (table == NULL) {
        batch->error = ENOMEM;
        return;
    }
    nftnl_table_set_u32(table, NFTNL_TABLE_FAMILY, NFPROTO_INET);
    struct nlmsghdr *message = NULL;
    if (nftnl_table_set_str(table, NFTNL_TABLE_NAME, SE_NFT_TABLE) != 0)
        batch->error = ENOMEM;
    else
        message = start_message(batch, type, flags, name);
    if (message != NULL) {
        nftnl_table_nlmsg_build_payload(message, table);
        finish_message(batch);
    }
    nftnl_table_free(table);
}

static void add_chain(struct batch *batch, const char *name, const char *type, uint32_t hook, int32_t priority) {
    struct nftnl_chain *chain = nftnl_chain_alloc();
    if (chain == NULL) {
        batch->error = ENOMEM;
        return;
    }
    nftnl_chain_set_u32(chain, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
    nftnl_chain_set_u32(chain, NFTNL_CHAIN_HOOKNUM, hook);
    nftnl_chain_set_s32(chain, NFTNL_CHAIN_PRIO, priority);
    nftnl_chain_set_u32(chain, NFTNL_CHAIN_POLICY, NF_ACCEPT);
    struct nlmsghdr *message = NULL;
    if (nftnl_chain_set_str(chain, NFTNL_CHAIN_TABLE, SE_NFT_TABLE) != 0 ||
        nftnl_chain_set_str(chain, NFTNL_CHAIN_NAME, name) != 0 || nftnl_chain_set_str(chain, NFTNL_CHAIN_TYPE, type) != 0)
        batch->error = ENOMEM;
    else
        message = start_message(batch, NFT_MSG_NEWCHAIN, NLM_F_CREATE, "nftables add chain");
    if (message != NULL) {
        nftnl_chain_nlmsg_build_payload(message, chain);
        finish_message(batch);
    }
    nftnl_chain_free(chain);
}

/* A rule under construction; an expression that could not be made marks it. */
struct rule {
    struct nftnl_rule *rule;
    bool incomplete;
};

static void append(struct rule *rule, struct nftnl_expr *expression) {
    if (expression == NULL)
        rule->incomplete = true;
    else
        nftnl_rule_add_expr(rule->rule, expression);
}

static struct nftnl_expr *meta(uint32_t key) {
    struct nftnl_expr *expression = nftnl_expr_alloc("meta");
    if (expression == NULL) return NULL;
    nftnl_expr_set_u32(expression, NFTNL_EXPR_META_KEY, key);
    nftnl_expr_set_u32(expression, NFTNL_EXPR_META_DREG, NFT_REG_1);
    return expression;
}

static struct nftnl_expr *payload(uint32_t base, uint32_t offset, uint32_t length) {
    struct nftnl_expr *expression = nftnl_expr_alloc("payload");
    if (expression == NULL) return NULL;
    nftnl_expr_set_u32(expression, NFTNL_EXPR_PAYLOAD_BASE, base);
    nftnl_expr_set_u32(expression, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
    nftnl_expr_set_u32(expression, NFTNL_EXPR_PAYLOAD_LEN, length);
    nftnl_expr_set_u32(expression, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
    return expression;
}

static struct nftnl_expr *compare(uint32_t operation, const void *data, uint32_t length) {
    struct nftnl_expr *expression = nftnl_expr_alloc("cmp");
    if (expression == NULL) return NULL;
    nftnl_expr_set_u32(expression, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
    nftnl_expr_set_u32(expression, NFTNL_EXPR_CMP_OP, operation);
    nftnl_expr_set(expression, NFTNL_EXPR_CMP_DATA, data, length);
    return expression;
}

static void match_family(struct rule *rule, const struct family *family) {
    append(rule, meta(NFT_META_NFPROTO));
    append(rule, compare(NFT_CMP_EQ, &family->nfproto, 1));
}

static void match_address(struct rule *rule, const struct family *family, uint32_t offset, uint32_t operation) {
    append(rule, payload(NFT_PAYLOAD_NETWORK_HEADER, offset, family->loopback_length));
    append(rule, compare(operation, family->loopback, family->loopback_length));
}

static void match_protocol(struct rule *rule, uint8_t protocol) {
    append(rule, meta(NFT_META_L4PROTO));
    append(rule, compare(NFT_CMP_EQ, &protocol, 1));
}

/* TCP and UDP keep the source port at 0 and the destination port at 2. */
static void match_port(struct rule *rule, uint32_t offset, uint32_t operation, uint16_t port) {
    uint16_t network_order = htons(port);
    append(rule, payload(NFT_PAYLOAD_TRANSPORT_HEADER, offset, sizeof network_order));
    append(rule, compare(operation, &network_order, sizeof network_order));
}

/* redirect to :port (the address becomes 127.0.0.1 or ::1: the hook is output). */
static void redirect(struct rule *rule, uint16_t port) {
    uint16_t network_order = htons(port);
    struct nftnl_expr *immediate = nftnl_expr_alloc("immediate");
    if (immediate != NULL) {
        nftnl_expr_set_u32(immediate, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
        nftnl_expr_set(immediate, NFTNL_EXPR_IMM_DATA, &network_order, sizeof network_order);
    }
    append(rule, immediate);
    struct nftnl_expr *redir = nftnl_expr_alloc("redir");
    if (redir != NULL) {
        nftnl_expr_set_u32(redir, NFTNL_EXPR_REDIR_REG_PROTO_MIN, NFT_REG_1);
        nftnl_expr_set_u32(redir, NFTNL_EXPR_REDIR_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED);
    }
    append(rule, redir);
}

static struct rule start_rule(const char *chain) {
    struct rule rule = {.rule = nftnl_rule_alloc()};
    if (rule.rule == NULL) return rule;
    nftnl_rule_set_u32(rule.rule, NFTNL_RULE_FAMILY, NFPROTO_INET);
    if (nftnl_rule_set_str(rule.rule, NFTNL_RULE_TABLE, SE_NFT_TABLE) != 0 ||
        nftnl_rule_set_str(rule.rule, NFTNL_RULE_CHAIN, chain) != 0)
        rule.incomplete = true;
    return rule;
}

static void add_rule(struct batch *batch, struct rule *rule) {
    if (rule->rule == NULL || rule->incomplete) {
        batch->error = ENOMEM;
    } else {
        struct nlmsghdr *message =
            start_message(batch, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, "nftables add rule");
        if (message != NULL) {
            nftnl_rule_nlmsg_build_payload(message, rule->rule);
            finish_message(batch);
        }
    }
    if (rule->rule != NULL) nftnl_rule_free(rule->rule);
}

static void add_redirects(struct batch *batch, uint16_t port) {
    static const char chain[] = "egress_redirect";
    add_chain(batch, chain, "nat", NF_INET_LOCAL_OUT, PRIORITY_DSTNAT);
    /* DNS first: port 53 over TCP would otherwise match the TCP rule below. */
    for (size_t index = 0; index < sizeof families / sizeof families[0]; index++) {
        static const uint8_t protocols[] = {IPPROTO_UDP, IPPROTO_TCP};
        for (size_t p = 0; p < sizeof protocols; p++) {
            struct rule rule = start_rule(chain);
            match_family(&rule, &families[index]);
            match_address(&rule, &families[index], families[index].daddr_offset, NFT_CMP_NEQ);
            match_protocol(&rule, protocols[p]);
            match_port(&rule, 2, NFT_CMP_EQ, DNS_PORT);
            redirect(&rule, DNS_PORT);
            add_rule(batch, &rule);
        }
    }
    for (size_t index = 0; index < sizeof families / sizeof families[0]; index++) {
        struct rule rule = start_rule(chain);
        match_family(&rule, &families[index]);
        match_address(&rule, &families[index], families[index].daddr_offset, NFT_CMP_NEQ);
        match_protocol(&rule, IPPROTO_TCP);
        redirect(&rule, port);
        add_rule(batch, &rule);
    }
}

/*
 * The guest's own loopback-to-loopback traffic (its dev server and its
 * clients) needs no NAT, so conntrack need not track it: that keeps it out of
 * the conntrack table (and its limit). The redirected flows stay tracked:
 * before NAT their destination is not loopback, and after it their ports are
 * `port` or 53, excluded here in both directions so the replies are un-NATed.
 *
 * Output alone suffices: every packet here is sent locally and comes back in
 * over lo still marked untracked, which conntrack at prerouting respects.
 */
static void add_loopback_notrack(struct batch *batch, uint16_t port) {
    static const char chain[] = "loopback_notrack";
    add_chain(batch, chain, "filter", NF_INET_LOCAL_OUT, PRIORITY_RAW);
    for (size_t index = 0; index < sizeof families / sizeof families[0]; index++) {
        static const uint8_t protocols[] = {IPPROTO_TCP, IPPROTO_UDP};
        for (size_t p = 0; p < sizeof protocols; p++) {
            struct rule rule = start_rule(chain);
            match_family(&rule, &families[index]);
            match_address(&rule, &families[index], families[index].saddr_offset, NFT_CMP_EQ);
            match_address(&rule, &families[index], families[index].daddr_offset, NFT_CMP_EQ);
            match_protocol(&rule, protocols[p]);
            match_port(&rule, 0, NFT_CMP_NEQ, port);
            match_port(&rule, 0, NFT_CMP_NEQ, DNS_PORT);
            match_port(&rule, 2, NFT_CMP_NEQ, port);
            match_port(&rule, 2, NFT_CMP_NEQ, DNS_PORT);
            append(&rule, nftnl_expr_alloc("notrack"));
            add_rule(batch, &rule);
        }
    }
}

/* Builds the batch into `buffer` and sends it. With `replace`, the table is
 * deleted first (create, delete, create: the idiom for replacing a table in
 * one batch); without, it must not exist yet (NLM_F_EXCL). */
static int install(struct mnl_socket *socket, char *buffer, uint16_t port, bool replace, const char **step) {
    struct batch batch = {.messages = mnl_nlmsg_batch_start(buffer, BATCH_LIMIT), .first_seq = 1, .next_seq = 1};
    if (batch.messages == NULL) {
        *step = "mnl_nlmsg_batch_start";
        return -1;
    }
    /* A failed commit is reported against the batch's first message. */
    batch.steps[0] = "nftables batch";
    nftnl_batch_begin(mnl_nlmsg_batch_current(batch.messages), batch.next_seq++);
    mnl_nlmsg_batch_next(batch.messages);
    if (replace) {
        add_table(&batch, NFT_MSG_NEWTABLE, NLM_F_CREATE, "nftables add table");
        add_table(&batch, NFT_MSG_DELTABLE, 0, "nftables delete table");
    }
    add_table(&batch, NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL, "nftables add table");
    add_redirects(&batch, port);
    add_loopback_notrack(&batch, port);
    uint32_t last_acknowledged = batch.next_seq - 1;
    if (batch.error == 0) {
        nftnl_batch_end(mnl_nlmsg_batch_current(batch.messages), batch.next_seq++);
        if (!mnl_nlmsg_batch_next(batch.messages)) batch.error = EMSGSIZE;
    }
    int result = -1;
    if (batch.error != 0) {
        *step = "nftables batch";
        errno = batch.error;
    } else {
        result = se_netlink_exchange(socket, mnl_nlmsg_batch_head(batch.messages),
                                     mnl_nlmsg_batch_size(batch.messages), batch.first_seq, last_acknowledged,
                                     batch.steps, step);
    }
    int saved = errno;
    mnl_nlmsg_batch_stop(batch.messages);
    errno = saved;
    return result;
}

int se_nft_install_egress(uint16_t port, const char **step) {
    SE_CLEANUP_MNL struct mnl_socket *socket = se_netlink_open(NETLINK_NETFILTER, step);
    if (socket == NULL) return -1;
    /* Room for one more message past the limit, which mnl_nlmsg_batch_next checks after the fact. */
    char *buffer = malloc(2 * BATCH_LIMIT);
    if (buffer == NULL) {
        *step = "malloc";
        return -1;
    }
    /* Creating takes well under a millisecond. Replacing takes RCU grace
     * periods (4-20 ms each here): the kernel frees what a batch deleted only
     * after one, and closing this socket waits for that; a batch that fails
     * (EEXIST) waits for one too. So try creating, and replace only when the
     * table is there already. */
    int result = install(socket, buffer, port, false, step);
    if (result != 0 && errno == EEXIST) result = install(socket, buffer, port, true, step);
    int saved = errno;
    free(buffer);
    errno = saved;
    return result;
}
