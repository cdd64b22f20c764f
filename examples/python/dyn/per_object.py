# One dyn.add_cli call per object, each a whole `configure service ...` snippet, as SR OS
# dynamic data services scripts often write them. The run's calls are joined and applied as one
# transaction: if any snippet is refused, none of them is applied.
#
# Script parameters: epipe={'far': '1/1/2:300'}
from alc import dyn


def saps(kept):
    return (kept['sap'], kept['far'])


def setup_epipe(params):
    params['service_id'] = dyn.select_free_id('service-id')
    params['sap'] = dyn.get_sap()
    dyn.add_cli("""
configure service epipe %(service_id)s customer 1 create
    description "dynsvc %(sap)s"
exit
""" % params)
    for sap in saps(params):
        dyn.add_cli("""
configure service
    epipe %s
        sap %s create
            no shutdown
        exit
    exit
exit
""" % (params['service_id'], sap))
    dyn.add_cli("configure service epipe %(service_id)s no shutdown exit\n" % params)
    return params


def teardown_epipe(kept):
    for sap in saps(kept):
        dyn.add_cli("""
configure service epipe %s
    sap %s shutdown exit
    no sap %s
exit
""" % (kept['service_id'], sap, sap))
    dyn.add_cli("""
configure service epipe %(service_id)s shutdown exit
configure service no epipe %(service_id)s
""" % kept)


dyn.action({'epipe': (setup_epipe, None, None, teardown_epipe)})
