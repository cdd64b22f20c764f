# A dynamic Epipe per dynamic data service SAP (SR OS dynamic data services).
#
# Script parameters, from Alc-Dyn-Serv-Script-Params or the local authentication database:
#   epipe={'description': 'dynsvc-epipe-1', 'sdp': 10, 'vc_id': 11}
# The setup function returns the dictionary the router keeps for the service; modify, revert
# and teardown receive it back.
from alc import dyn


def setup_epipe(params):
    params['service_id'] = dyn.select_free_id('service-id')
    params['sap'] = dyn.get_sap()
    dyn.add_cli("""
configure service
    epipe %(service_id)s customer 1 create
        description "%(description)s"
        sap %(sap)s create
            no shutdown
        exit
        spoke-sdp %(sdp)s:%(vc_id)s create
            no shutdown
        exit
        no shutdown
    exit
exit
""" % params)
    return params


def set_description(kept):
    dyn.add_cli("""
configure service
    epipe %(service_id)s
        description "%(description)s"
    exit
exit
""" % kept)


def modify_epipe(kept, params):
    kept['description'] = params['description']
    set_description(kept)
    return kept


def revert_epipe(kept, params):
    # The kept dictionary is the one before the failed modify.
    set_description(kept)


def teardown_epipe(kept):
    dyn.add_cli("""
configure service
    epipe %(service_id)s
        sap %(sap)s
            shutdown
        exit
        no sap %(sap)s
        spoke-sdp %(sdp)s:%(vc_id)s
            shutdown
        exit
        no spoke-sdp %(sdp)s:%(vc_id)s
        shutdown
    exit
    no epipe %(service_id)s
exit
""" % kept)


dyn.action({'epipe': (setup_epipe, modify_epipe, revert_epipe, teardown_epipe)})
