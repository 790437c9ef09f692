"""The project files Asterisk's rendered configuration is made of, as package data.

``extensions_callcontrol.conf``, ``extensions_bench.conf``, ``modules.conf`` and ``asterisk.conf``
here are symbolic links to ``dialplan/`` and ``asterisk-conf/`` of the source
tree (the files are edited there); building a wheel copies their content in, so
``callcontrol asterisk-config render`` works from an installed wheel too
(``provisioning.asterisk_config.ProjectSources.packaged``).
"""
