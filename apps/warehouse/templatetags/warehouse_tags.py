from django import template

register = template.Library()


@register.filter
def get_item(mapping, key):
    """`row|get_item:column`: dict lookup for column names the template cannot spell as attributes."""
    try:
        return mapping.get(key)
    except AttributeError:
        return None
