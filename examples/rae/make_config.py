#!/usr/bin/env python3
# Appendix A of the COMET RAE document (COMET D4.3), ported to Python 3 for brasa.
#
# Changes from the document, and only these:
# - the import path: `config_pb2` is generated from brasa's crates/proto/proto/rae/config.proto
#   (python3 -m grpc_tools.protoc -I crates/proto/proto --python_out=OUT rae/config.proto) and
#   found through the RAE_PB2_PATH environment variable (default: build/resources as before);
# - the addresses: the document's 10.x addresses become 127.0.0.x / 127.203.x.0 so that nothing
#   leaves this machine (RAE_LOCAL_IP, RAE_PORT and RAE_CME_PORT may override them for tests);
# - two typos that make the original fail or misconfigure: the second peer is AS 9 (the document
#   sets remote_as_number = 5 twice) and `prov.sink.prefix.prefix_length` (the document writes
#   `prov.sink.prefix_prefix_length`);
# - the output file name may be given as the first argument (default rae11.conf.pb2).
import os
import sys

sys.path.append(os.environ.get("RAE_PB2_PATH", "build/resources"))
import config_pb2  # noqa: E402

LOCAL_IP = os.environ.get("RAE_LOCAL_IP", "127.0.3.1")
PORT = int(os.environ.get("RAE_PORT", "10001"))
CME_PORT = int(os.environ.get("RAE_CME_PORT", "9090"))

cm = config_pb2.ConfigurationMessage()

# Limit for the number of paths maintained for a single destination prefix.
cm.limit_of_preferred_paths = 3

# Configure information about local AS
cm.local_as_number = 11
cm.local_ip_address = LOCAL_IP
cm.local_port_number = PORT

# Limit for the intensity of the UPDATE messages exchanged between RAEs
cm.minimum_update_interval = 15

# Provide the listening port of the CME
cm.cme_ip_address = "127.0.0.1"
cm.cme_port_number = CME_PORT

# Define parameters of path ranking algorithm
# use 'multiplicative inverse' function for decision process
cm.decision_with_flat_function = 0

# create QoS targets for class 1 (BTBE)
dp = cm.decision_parameters.add()
dp.id = 1
dp.delay_aspiration = 0.5
dp.delay_reservation = 1.0
dp.loss_aspiration = 1e-5
dp.loss_reservation = 1e-3
dp.bandwidth_aspiration = 4e6
dp.bandwidth_reservation = 1e6

# create QoS targets for class 2 (PR)
dp = cm.decision_parameters.add()
dp.id = 2
dp.delay_aspiration = 0.15
dp.delay_reservation = 0.4
dp.loss_aspiration = 1e-6
dp.loss_reservation = 1e-4
dp.bandwidth_aspiration = 10e6
dp.bandwidth_reservation = 4e6

# Create peering to AS #5
peer = cm.peer_table.add()
peer.remote_as_number = 5
peer.remote_ip_address = "127.0.5.1"
peer.remote_port_number = 10001
# Set the TTL value that will allow to send IP packets to RAE in AS #5.
peer.ttl_value = 3
# Describe QoS parameters on the link towards the AS #5 (2 classes).
c = peer.class_table.add()
c.cos_id = 1
c.metric.loss_ratio = 1e-6
c.metric.maximum_delay = 0.001
c.metric.supported_bandwidth = 10e6
c = peer.class_table.add()
c.cos_id = 2
c.metric.loss_ratio = 5e-6
c.metric.maximum_delay = 0.005
c.metric.supported_bandwidth = 10e6

# Create peering to AS #9
peer = cm.peer_table.add()
peer.remote_as_number = 9
peer.remote_ip_address = "127.0.9.1"
peer.remote_port_number = 10001
# Set the TTL value that will allow to send IP packets to RAE in AS #9.
peer.ttl_value = 4
# Describe QoS parameters on the link towards the AS #9 (2 classes).
c = peer.class_table.add()
c.cos_id = 1
c.metric.loss_ratio = 2e-6
c.metric.maximum_delay = 0.002
c.metric.supported_bandwidth = 10e6
c = peer.class_table.add()
c.cos_id = 2
c.metric.loss_ratio = 4e-6
c.metric.maximum_delay = 0.010
c.metric.supported_bandwidth = 10e6

# Create prefixes for access networks: 127.203.1.0/24 and 127.203.2.0/24.
prefix = cm.prefix_table.add()
prefix.ip_address = "127.203.1.0"
prefix.prefix_length = 24
prefix = cm.prefix_table.add()
prefix.ip_address = "127.203.2.0"
prefix.prefix_length = 24


def add_classes(prov, classes):
    for cos_id, loss, delay in classes:
        c = prov.class_table.add()
        c.cos_id = cos_id
        c.metric.loss_ratio = loss
        if delay is not None:
            c.metric.maximum_delay = delay
        c.metric.supported_bandwidth = 10e6


def provision(source, sink, classes):
    prov = cm.provisioning_table.add()
    for end, target in ((source, prov.source), (sink, prov.sink)):
        if isinstance(end, int):
            target.as_number = end
        else:
            target.prefix.ip_address = end
            target.prefix.prefix_length = 24
    add_classes(prov, classes)


# Intra-domain provisioning, entry by entry as in the document (a delay the document leaves
# out is left out here too).
provision("127.203.1.0", "127.203.2.0", [(1, 1e-6, None), (2, 1e-6, 0.001)])
provision("127.203.1.0", 5, [(1, 1e-6, None), (2, 1e-6, 0.001)])
provision("127.203.1.0", 9, [(1, 1e-6, 0.0005), (2, 1e-6, 0.001)])
provision("127.203.2.0", "127.203.1.0", [(1, 2e-6, 0.0005), (2, 2e-6, 0.002)])
provision("127.203.2.0", 5, [(1, 1e-6, None), (2, 1e-6, 0.001)])
provision("127.203.2.0", 9, [(1, 1e-6, None), (2, 1e-6, 0.001)])
provision(5, "127.203.1.0", [(1, 1e-6, 0.0005), (2, 1e-6, 0.001)])
provision(5, "127.203.2.0", [(1, 1e-6, 0.0005), (2, 1e-6, 0.001)])
provision(5, 9, [(1, 1e-6, None), (2, 1e-6, 0.001)])
provision(9, "127.203.1.0", [(1, 1e-6, 0.0005), (2, 1e-6, 0.001)])
provision(9, "127.203.2.0", [(1, 1e-6, None), (2, 1e-6, 0.001)])
provision(9, 5, [(1, 1e-6, 0.0005), (2, 1e-6, 0.001)])

# Finally, save the file!
output = sys.argv[1] if len(sys.argv) > 1 else "rae11.conf.pb2"
open(output, "wb").write(cm.SerializeToString())
