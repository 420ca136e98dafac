# Voucher portal setup for router Mama Njeri Cafe (mama-njeri-4k2a)
# Portal: https://portal.example.com   Customer page: https://portal.example.com/r/mama-njeri-4k2a

# 0. The management tunnel to the portal (RouterOS 7). RouterOS 6 has no WireGuard: such a router
#    needs a public address, or pull sync.
:if ([:pick [/system resource get version] 0 1] = "6") do={ :error "voucher portal: RouterOS 6 has no WireGuard; give this router a public address or use pull sync" }
# On RouterOS 7.17+ the device-mode must allow the hotspot (home and basic modes turn it off;
# only a button press on site changes the mode).
:do { :local m [/system device-mode get mode]; :if ($m = "home" || $m = "basic") do={ :put ("voucher portal: device-mode is " . $m . ", which turns the hotspot off: run /system device-mode update mode=advanced and press the reset button within 5 minutes") } } on-error={}
:if ([:len [/interface wireguard find name="wg-portal"]] = 0) do={ /interface wireguard add name="wg-portal" listen-port=13231 mtu=1420 private-key="sDBaCNL2x7xIqTmf624ClI0yEL8z/jBqYtTXXghIo38=" comment="voucher portal mama-njeri-4k2a" }
/interface wireguard set [find name="wg-portal"] private-key="sDBaCNL2x7xIqTmf624ClI0yEL8z/jBqYtTXXghIo38="
:if ([:len [/interface wireguard peers find interface="wg-portal" public-key="zk+HZezDf4BtugtbV4MQzvKnZxPFD7rJgnynSO/Fl20="]] = 0) do={ /interface wireguard peers add interface="wg-portal" public-key="zk+HZezDf4BtugtbV4MQzvKnZxPFD7rJgnynSO/Fl20=" allowed-address=10.77.0.1/32 comment="voucher portal mama-njeri-4k2a" }
/interface wireguard peers set [find interface="wg-portal" public-key="zk+HZezDf4BtugtbV4MQzvKnZxPFD7rJgnynSO/Fl20="] endpoint-address="hub.example.net" endpoint-port=51820 allowed-address=10.77.0.1/32 persistent-keepalive=25s
:if ([:len [/ip address find interface="wg-portal" address="10.77.0.17/16"]] = 0) do={ /ip address add address=10.77.0.17/16 interface="wg-portal" comment="voucher portal mama-njeri-4k2a" }
# The API from the hub only, accepted before any drop rule in the input chain.
:if ([:len [/ip firewall filter find comment="voucher portal api mama-njeri-4k2a"]] = 0) do={ /ip firewall filter add chain=input action=accept in-interface="wg-portal" src-address=10.77.0.1 protocol=tcp dst-port=8728 comment="voucher portal api mama-njeri-4k2a" }
:do { :local ids [/ip firewall filter find dynamic=no]; :local ours [/ip firewall filter find comment="voucher portal api mama-njeri-4k2a"]; :if ([:len $ids] > 1 && ($ids->0) != ($ours->0)) do={ /ip firewall filter move ($ours->0) ($ids->0) } }

# 1. A user group that may only use the API, read and write (no ssh, winbox, ftp, reboot).
:if ([:len [/user group find name="voucher-portal"]] = 0) do={ /user group add name="voucher-portal" policy=api,read,write comment="voucher portal mama-njeri-4k2a" }
/user group set [find name="voucher-portal"] policy=api,read,write

# 2. The portal's API user with a long random password.
# API logins only from the portal at 10.77.0.1/32.
:if ([:len [/user find name="voucher-portal"]] = 0) do={ /user add name="voucher-portal" group="voucher-portal" password="S3cret-pass_word" address=10.77.0.1/32 comment="voucher portal mama-njeri-4k2a" } else={ /user set [find name="voucher-portal"] group="voucher-portal" password="S3cret-pass_word" address=10.77.0.1/32 }

# 3. The api service on port 8728.
/ip service set api disabled=no port=8728 address=10.77.0.1/32
/ip service set api-ssl address=10.77.0.1/32

# 4. Walled garden: customers reach the portal before they have paid.
:if ([:len [/ip hotspot walled-garden find dst-host="portal.example.com"]] = 0) do={ /ip hotspot walled-garden add action=allow dst-host="portal.example.com" comment="voucher portal mama-njeri-4k2a" }
:if ([:len [/ip hotspot walled-garden ip find dst-host="portal.example.com"]] = 0) do={ /ip hotspot walled-garden ip add action=accept dst-host="portal.example.com" comment="voucher portal mama-njeri-4k2a" }

# 5. The hotspot profile serves pages from hotspot; upload the portal's login.html there.
/ip hotspot profile set [find name="hsprof1"] html-directory="hotspot" login-by=http-chap,http-pap

:put "voucher portal: setup done"
