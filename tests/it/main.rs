mod ldap;
