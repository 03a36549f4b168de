#!/usr/bin/python3
# What LDAP cannot do to the throwaway Samba AD DC of src/testkit/samba.rs,
# done on its database with Samba's own Python bindings (run while samba
# serves; the database is locked per write):
#   - backdate pwdLastSet (AD accepts only 0 and -1 over LDAP), so a user's
#     password is expired under the domain's maximum age;
#   - give the service account the Reset Password right and write access to
#     pwdLastSet on an OU (the expired/must-change change path).
#
# usage: seed.py SMB_CONF SAM_LDB expire DN FILETIME
#        seed.py SMB_CONF SAM_LDB grant-reset OU_DN TRUSTEE_DN
# Must be run by /usr/bin/python3 (Debian's samba modules).
import sys

import ldb
from samba.auth import system_session
from samba.dcerpc import security
from samba.ndr import ndr_unpack
from samba.param import LoadParm
from samba.samdb import SamDB
from samba.sd_utils import SDUtils

# Lets the system session write pwdLastSet values the password_hash module refuses.
BYPASS_PASSWORD_HASH = "local_oid:1.3.6.1.4.1.7165.4.3.12:0"
# Extended right "User-Force-Change-Password" (Reset Password).
RESET_PASSWORD = "00299570-246d-11d0-a768-00aa006e0529"
# Attribute pwdLastSet.
PWD_LAST_SET = "bf967a0a-0de6-11d0-a285-00aa003049e2"


def main():
    conf, url, command = sys.argv[1:4]
    lp = LoadParm()
    lp.load(conf)
    db = SamDB(url=url, session_info=system_session(), lp=lp)
    if command == "expire":
        dn, filetime = sys.argv[4:6]
        m = ldb.Message()
        m.dn = ldb.Dn(db, dn)
        m["pwdLastSet"] = ldb.MessageElement(filetime, ldb.FLAG_MOD_REPLACE, "pwdLastSet")
        db.modify(m, controls=["relax:0", BYPASS_PASSWORD_HASH])
    elif command == "grant-reset":
        ou, trustee = sys.argv[4:6]
        res = db.search(base=trustee, scope=ldb.SCOPE_BASE, attrs=["objectSid"])
        sid = str(ndr_unpack(security.dom_sid, res[0]["objectSid"][0]))
        sd = SDUtils(db)
        sd.dacl_add_ace(ou, "(OA;CI;CR;%s;;%s)" % (RESET_PASSWORD, sid))
        sd.dacl_add_ace(ou, "(OA;CI;WP;%s;;%s)" % (PWD_LAST_SET, sid))
    else:
        sys.exit("unknown command %r" % command)


if __name__ == "__main__":
    main()
