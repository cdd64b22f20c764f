# Every dynamic data service SAP of a customer joins one VPLS (SR OS dynamic data services):
# an n:1 relation through dyn.reference. The first SAP's setup creates the VPLS; the last
# SAP's teardown removes it.
#
# Script parameters: vpls_sap={'customer': 'cust-1'}
from alc import dyn


def setup_vpls(params):
    params['service_id'] = dyn.select_free_id('service-id')
    dyn.add_cli("""
configure service
    vpls %(service_id)s customer 1 create
        description "%(customer)s"
        no shutdown
    exit
exit
""" % params)
    return params


def teardown_vpls(kept):
    dyn.add_cli("""
configure service
    vpls %(service_id)s
        shutdown
    exit
    no vpls %(service_id)s
exit
""" % kept)


def setup_sap(params):
    vpls = dyn.reference('vpls', params['customer'], {'customer': params['customer']})
    kept = {'service_id': vpls['service_id'], 'sap': dyn.get_sap()}
    dyn.add_cli("""
configure service
    vpls %(service_id)s
        sap %(sap)s create
            no shutdown
        exit
    exit
exit
""" % kept)
    return kept


def teardown_sap(kept):
    dyn.add_cli("""
configure service
    vpls %(service_id)s
        sap %(sap)s
            shutdown
        exit
        no sap %(sap)s
    exit
exit
""" % kept)


dyn.action({
    'vpls': (setup_vpls, None, None, teardown_vpls),
    'vpls_sap': (setup_sap, None, None, teardown_sap),
})
